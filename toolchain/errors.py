"""The one error type users see.

Every problem a user can fix (a wrong path, an unsupported op, a malformed file, bad data) is raised as
`SnncError` with a one-line message that names the file or node and says what to do. The CLI prints the
message, exits with code 2 and writes no output; any other exception is a bug in snnc.
"""

# The largest array snnc allocates from a size a file declares (ONNX tensors, NIR datasets, a signal per sample).
MAX_TENSOR_BYTES = 2 * 2**30


def error_summary(err: Exception, limit: int = 300) -> str:
    """A library's error message as one line (ONNX's checker spreads the node it names over several lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SnncError(Exception):
    """A user-facing error: one line, naming the file or node and the fix."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
