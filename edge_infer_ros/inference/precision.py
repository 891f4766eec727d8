"""
The numeric precision a model graph runs in: fp32, fp16 or int8.

Why: one QDQ file serves ONNX Runtime (int8 kernels on the CPU) and TensorRT (an INT8 engine
from its Q/DQ nodes), so the precision is a property of the graph, and the detector says it in
its start-up log.
"""

from __future__ import annotations

import os
from typing import Union

import onnx

#: Nodes that only a quantized graph holds.
QUANTIZED_OPS = frozenset(('QuantizeLinear', 'DequantizeLinear', 'QLinearConv',
                           'QLinearMatMul', 'ConvInteger', 'MatMulInteger'))


def graph_precision(model_path: Union[str, 'os.PathLike[str]']) -> str:
    """Return 'int8' when the graph holds QuantizeLinear nodes, else its input's float type."""
    proto = onnx.load(os.fspath(model_path), load_external_data=False)
    if any(n.op_type in QUANTIZED_OPS for n in proto.graph.node):
        return 'int8'
    inits = {t.name for t in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name not in inits:
            if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
                return 'fp16'
            break
    return 'fp32'
