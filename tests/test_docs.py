from toolchain.docs import OP_SUPPORT, op_support_markdown


def test_op_support_matrix_is_generated_from_the_frontend():
    assert OP_SUPPORT.read_text() == op_support_markdown(), "docs/op-support.md is stale: run `make docs`"
