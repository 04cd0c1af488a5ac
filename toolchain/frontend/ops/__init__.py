"""The converters of ONNX nodes into graph nodes, one module per family of ops.

Each converter is `convert_<op>(importer, node, attrs)`: it reads the node's inputs through the `Importer`
(toolchain/frontend/onnx_import.py, whose `SUPPORTED_OPS` says which op types each converter takes) and adds graph
nodes, constants, aliases or views to it, or raises `Unsupported` (base.py) with what it cannot take.
"""
