"""The int8 TFLite twin of a network of ``networks.py``, for Arm's Vela (run with the
Python that has ``ethos-u-vela`` installed: it brings ``flatbuffers`` and the TFLite
schema). Weights are random int8 (Vela's estimate depends on their sizes and, through
weight compression, a little on their values; a fixed seed keeps the run repeatable);
activations are int8 with one scale each, biases int32, as a post-training quantised
model has them."""

from __future__ import annotations

import numpy as np
import flatbuffers
from ethosu.vela.tflite import (Buffer, BuiltinOperator as BO, BuiltinOptions as BOpt,
                                Conv2DOptions, DepthwiseConv2DOptions, FullyConnectedOptions,
                                Model, Operator, OperatorCode, Padding, Pool2DOptions,
                                QuantizationParameters, SoftmaxOptions, SubGraph, Tensor,
                                TensorType, AddOptions, ReshapeOptions, TransposeOptions,
                                BatchMatMulOptions, ActivationFunctionType as AF)

from networks import NETWORKS, same_out


class TFLiteBuilder:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.tensors = []        # (shape, type, buffer data or None, scale)
        self.ops = []            # (opcode, inputs, outputs, options type, options fn)
        self.shapes = []
        self.value = []          # value id -> tensor index

    # -- tensors -----------------------------------------------------------------------------
    def _tensor(self, shape, ttype=TensorType.TensorType.INT8, data=None, scale=0.05, zp=0):
        self.tensors.append((list(shape), ttype, data, scale, zp))
        return len(self.tensors) - 1

    def _act(self, shape):
        t = self._tensor((1,) + tuple(shape))
        self.value.append(t)
        self.shapes.append(tuple(shape))
        return len(self.value) - 1

    def _weights(self, shape):
        return self._tensor(shape, data=self.rng.integers(-127, 128, size=shape, dtype=np.int8),
                            scale=0.01)

    def _bias(self, n):
        return self._tensor((n,), TensorType.TensorType.INT32,
                            data=self.rng.integers(-1000, 1000, size=(n,), dtype=np.int32),
                            scale=0.0005)

    def _op(self, code, inputs, outputs, opt_type=0, opt=None):
        self.ops.append((code, inputs, outputs, opt_type, opt))

    # -- the builder interface of networks.py -------------------------------------------------
    def input(self, shape):
        return self._act(shape)

    def conv(self, x, cout, kernel, stride, relu=False):
        h, w, c = self.shapes[x]
        out = self._act((same_out(h, kernel[0], stride[0]), same_out(w, kernel[1], stride[1]), cout))
        wt, bt = self._weights((cout, kernel[0], kernel[1], c)), self._bias(cout)

        def opt(b):
            Conv2DOptions.Start(b)
            Conv2DOptions.AddPadding(b, Padding.Padding.SAME)
            Conv2DOptions.AddStrideW(b, stride[1])
            Conv2DOptions.AddStrideH(b, stride[0])
            Conv2DOptions.AddFusedActivationFunction(b, AF.ActivationFunctionType.RELU if relu else 0)
            Conv2DOptions.AddDilationWFactor(b, 1)
            Conv2DOptions.AddDilationHFactor(b, 1)
            return Conv2DOptions.End(b)
        self._op(BO.BuiltinOperator.CONV_2D, [self.value[x], wt, bt], [self.value[out]],
                 BOpt.BuiltinOptions.Conv2DOptions, opt)
        return out

    def dw(self, x, kernel, stride, relu=False):
        h, w, c = self.shapes[x]
        out = self._act((same_out(h, kernel[0], stride[0]), same_out(w, kernel[1], stride[1]), c))
        wt, bt = self._weights((1, kernel[0], kernel[1], c)), self._bias(c)

        def opt(b):
            DepthwiseConv2DOptions.Start(b)
            DepthwiseConv2DOptions.AddPadding(b, Padding.Padding.SAME)
            DepthwiseConv2DOptions.AddStrideW(b, stride[1])
            DepthwiseConv2DOptions.AddStrideH(b, stride[0])
            DepthwiseConv2DOptions.AddDepthMultiplier(b, 1)
            DepthwiseConv2DOptions.AddFusedActivationFunction(b, AF.ActivationFunctionType.RELU if relu else 0)
            DepthwiseConv2DOptions.AddDilationWFactor(b, 1)
            DepthwiseConv2DOptions.AddDilationHFactor(b, 1)
            return DepthwiseConv2DOptions.End(b)
        self._op(BO.BuiltinOperator.DEPTHWISE_CONV_2D, [self.value[x], wt, bt], [self.value[out]],
                 BOpt.BuiltinOptions.DepthwiseConv2DOptions, opt)
        return out

    def fc(self, x, n, relu=False):
        h, w, c = self.shapes[x]
        rows = h * w
        out = self._act((h, w, n))
        wt, bt = self._weights((n, c)), self._bias(n)
        # FULLY_CONNECTED over every position: keep_num_dims keeps (1, H, W, n)

        def opt(b):
            FullyConnectedOptions.Start(b)
            FullyConnectedOptions.AddFusedActivationFunction(b, AF.ActivationFunctionType.RELU if relu else 0)
            FullyConnectedOptions.AddKeepNumDims(b, True)
            return FullyConnectedOptions.End(b)
        assert rows >= 1
        self._op(BO.BuiltinOperator.FULLY_CONNECTED, [self.value[x], wt, bt], [self.value[out]],
                 BOpt.BuiltinOptions.FullyConnectedOptions, opt)
        return out

    def add(self, a, b_):
        out = self._act(self.shapes[a])

        def opt(b):
            AddOptions.Start(b)
            return AddOptions.End(b)
        self._op(BO.BuiltinOperator.ADD, [self.value[a], self.value[b_]], [self.value[out]],
                 BOpt.BuiltinOptions.AddOptions, opt)
        return out

    def relu(self, x):
        out = self._act(self.shapes[x])
        self._op(BO.BuiltinOperator.RELU, [self.value[x]], [self.value[out]])
        return out

    def avgpool(self, x):
        h, w, c = self.shapes[x]
        out = self._act((1, 1, c))

        def opt(b):
            Pool2DOptions.Start(b)
            Pool2DOptions.AddPadding(b, Padding.Padding.VALID)
            Pool2DOptions.AddStrideW(b, 1)
            Pool2DOptions.AddStrideH(b, 1)
            Pool2DOptions.AddFilterWidth(b, w)
            Pool2DOptions.AddFilterHeight(b, h)
            return Pool2DOptions.End(b)
        self._op(BO.BuiltinOperator.AVERAGE_POOL_2D, [self.value[x]], [self.value[out]],
                 BOpt.BuiltinOptions.Pool2DOptions, opt)
        return out

    def softmax(self, x):
        out = self._act(self.shapes[x])
        self.tensors[self.value[out]] = self.tensors[self.value[out]][:3] + (1 / 256, -128)

        def opt(b):
            SoftmaxOptions.Start(b)
            SoftmaxOptions.AddBeta(b, 1.0)
            return SoftmaxOptions.End(b)
        self._op(BO.BuiltinOperator.SOFTMAX, [self.value[x]], [self.value[out]],
                 BOpt.BuiltinOptions.SoftmaxOptions, opt)
        return out

    def _reshape(self, x, shape):
        out = self._act(shape)
        shp = self._tensor((len(shape) + 1,), TensorType.TensorType.INT32,
                           data=np.array((1,) + tuple(shape), dtype=np.int32))
        self._op(BO.BuiltinOperator.RESHAPE, [self.value[x], shp], [self.value[out]])
        return out

    def _transpose(self, x, perm):
        shape = tuple(self.shapes[x][p - 1] for p in perm[1:])
        out = self._act(shape)
        pt = self._tensor((4,), TensorType.TensorType.INT32, data=np.array(perm, dtype=np.int32))
        self._op(BO.BuiltinOperator.TRANSPOSE, [self.value[x], pt], [self.value[out]])
        return out

    def _bmm(self, a, b_, adj_y=False):
        ha, ra, ka = self.shapes[a]
        _, rb, kb = self.shapes[b_]
        out = self._act((ha, ra, rb if adj_y else kb))

        def opt(b):
            BatchMatMulOptions.Start(b)
            BatchMatMulOptions.AddAdjX(b, False)
            BatchMatMulOptions.AddAdjY(b, adj_y)
            return BatchMatMulOptions.End(b)
        self._op(BO.BuiltinOperator.BATCH_MATMUL, [self.value[a], self.value[b_]], [self.value[out]],
                 BOpt.BuiltinOptions.BatchMatMulOptions, opt)
        return out

    def attention(self, q, k, v, heads):
        _, seq, d = self.shapes[q]
        dh = d // heads
        split = [self._transpose(self._reshape(t, (seq, heads, dh)), (0, 2, 1, 3)) for t in (q, k, v)]
        qh, kh, vh = split                                   # (heads, seq, dh)
        s = self.softmax(self._bmm(qh, kh, adj_y=True))      # (heads, seq, seq)
        o = self._bmm(s, vh)                                 # (heads, seq, dh)
        o = self._transpose(o, (0, 2, 1, 3))                 # (seq, heads, dh)
        return self._reshape(o, (1, seq, d))

    # -- serialisation ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        b = flatbuffers.Builder(1 << 20)
        codes = sorted({op[0] for op in self.ops})
        code_index = {c: i for i, c in enumerate(codes)}
        # buffers: 0 is the empty sentinel
        buf_offsets = []
        datas = [None] + [t[2] for t in self.tensors]
        for d in datas:
            if d is not None:
                raw = np.ascontiguousarray(d).tobytes()
                b.StartVector(1, len(raw), 16)
                for byte in reversed(raw):
                    b.PrependByte(byte)
                vec = b.EndVector()
            Buffer.Start(b)
            if d is not None:
                Buffer.AddData(b, vec)
            buf_offsets.append(Buffer.End(b))
        tens = []
        for i, (shape, ttype, data, scale, zp) in enumerate(self.tensors):
            name = b.CreateString(f"t{i}")
            QuantizationParameters.StartScaleVector(b, 1)
            b.PrependFloat32(scale)
            sv = b.EndVector()
            QuantizationParameters.StartZeroPointVector(b, 1)
            b.PrependInt64(zp)
            zv = b.EndVector()
            QuantizationParameters.Start(b)
            QuantizationParameters.AddScale(b, sv)
            QuantizationParameters.AddZeroPoint(b, zv)
            q = QuantizationParameters.End(b)
            Tensor.StartShapeVector(b, len(shape))
            for s in reversed(shape):
                b.PrependInt32(s)
            shp = b.EndVector()
            Tensor.Start(b)
            Tensor.AddShape(b, shp)
            Tensor.AddType(b, ttype)
            Tensor.AddBuffer(b, i + 1 if data is not None else 0)
            Tensor.AddName(b, name)
            Tensor.AddQuantization(b, q)
            tens.append(Tensor.End(b))
        ops = []
        for code, inputs, outputs, opt_type, opt in self.ops:
            o_off = opt(b) if opt else None
            Operator.StartInputsVector(b, len(inputs))
            for t in reversed(inputs):
                b.PrependInt32(t)
            iv = b.EndVector()
            Operator.StartOutputsVector(b, len(outputs))
            for t in reversed(outputs):
                b.PrependInt32(t)
            ov = b.EndVector()
            Operator.Start(b)
            Operator.AddOpcodeIndex(b, code_index[code])
            Operator.AddInputs(b, iv)
            Operator.AddOutputs(b, ov)
            if o_off is not None:
                Operator.AddBuiltinOptionsType(b, opt_type)
                Operator.AddBuiltinOptions(b, o_off)
            ops.append(Operator.End(b))

        def vec(items, start):
            start(b, len(items))
            for it in reversed(items):
                b.PrependUOffsetTRelative(it)
            return b.EndVector()

        def ivec(items, start):
            start(b, len(items))
            for it in reversed(items):
                b.PrependInt32(it)
            return b.EndVector()
        tv = vec(tens, SubGraph.StartTensorsVector)
        opv = vec(ops, SubGraph.StartOperatorsVector)
        inv = ivec([self.value[0]], SubGraph.StartInputsVector)
        outv = ivec([self.value[-1]], SubGraph.StartOutputsVector)
        SubGraph.Start(b)
        SubGraph.AddTensors(b, tv)
        SubGraph.AddOperators(b, opv)
        SubGraph.AddInputs(b, inv)
        SubGraph.AddOutputs(b, outv)
        sg = SubGraph.End(b)
        oc = []
        for c in codes:
            OperatorCode.Start(b)
            OperatorCode.AddDeprecatedBuiltinCode(b, min(c, 127))
            OperatorCode.AddBuiltinCode(b, c)
            OperatorCode.AddVersion(b, 1)
            oc.append(OperatorCode.End(b))
        ocv = vec(oc, Model.StartOperatorCodesVector)
        sgv = vec([sg], Model.StartSubgraphsVector)
        bv = vec(buf_offsets, Model.StartBuffersVector)
        desc = b.CreateString("fodlam validation twin")
        Model.Start(b)
        Model.AddVersion(b, 3)
        Model.AddOperatorCodes(b, ocv)
        Model.AddSubgraphs(b, sgv)
        Model.AddDescription(b, desc)
        Model.AddBuffers(b, bv)
        b.Finish(Model.End(b), b"TFL3")
        return bytes(b.Output())


def tflite_bytes(name: str) -> bytes:
    tb = TFLiteBuilder()
    NETWORKS[name](tb)
    return tb.to_bytes()


if __name__ == "__main__":
    import sys
    out = sys.argv[2]
    open(out, "wb").write(tflite_bytes(sys.argv[1]))
