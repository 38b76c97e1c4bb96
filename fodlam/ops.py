"""Non-MAC operations shared by every importer: kind and operations per output element.

Keys are lower-case op names with '_' removed, so ONNX ``LeakyRelu``, aten
``leaky_relu`` and ``leaky_relu_`` all find ``leakyrelu``. The numbers are first-order
operation counts (one compare, add, multiply or table lookup each); transcendental
functions count a few operations. They never add to MACs.
"""

from __future__ import annotations

from . import layers as L

# kind, ops per output element
_TABLE: dict[str, tuple[str, float]] = {}


def canon(name: str) -> str:
    """ONNX ``LeakyRelu`` / aten ``leaky_relu_`` -> ``leakyrelu``."""
    name = name.rsplit(".", 1)[-1] if "::" not in name else name.split("::")[-1]
    name = name.lower().rstrip("_")
    return name.replace("_", "")


def _add(kind: str, ops: float, *names: str) -> None:
    """Register ops under their canonical key; a key registered twice is a bug, refused."""
    for name in names:
        key = canon(name)
        if key != name:
            raise ValueError(f"fodlam.ops: register '{name}' as its canonical key '{key}'")
        if key in _TABLE:
            raise ValueError(f"fodlam.ops: '{name}' is registered twice")
        _TABLE[key] = (kind, ops)


# activations and unary math
_add("eltwise", 1, "relu", "relu6", "leakyrelu", "prelu", "prelukernel", "clip", "clamp", "clampmin", "clampmax",
     "abs", "neg", "sign", "floor", "ceil", "round", "trunc", "not", "bitwisenot", "threshold",
     "hardtanh", "reciprocal", "square", "isnan", "isinf", "cast", "to", "copy", "fill", "tocopy",
     "logicalnot", "signbit", "frac", "nantonum", "positive")
_add("eltwise", 2, "hardsigmoid", "shrink", "elu", "selu", "celu", "softsign", "thresholdedrelu",
     "sqrt", "rsqrt", "quantizelinear", "dequantizelinear", "fakequantize", "hardshrink",
     "quantizepertensor", "quantizeperchannel", "dequantize",
     "softshrink")
_add("eltwise", 3, "hardswish", "quickgelu", "rotaryembedding")
_add("eltwise", 4, "sigmoid", "exp", "log", "log1p", "expm1", "exp2", "erf", "erfc", "tanh",
     "softplus", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh",
     "acosh", "atanh", "logsigmoid", "swish", "silu", "dynamicquantizelinear", "pow")
_add("eltwise", 6, "mish", "glu", "swiglu", "softmaxcrossentropyloss")
_add("eltwise", 8, "gelu", "fastgelu", "biasgelu")
# binary / n-ary arithmetic and comparisons
_add("eltwise", 1, "add", "sub", "rsub", "mul", "div", "max", "min", "maximum", "minimum",
     "mean", "sum", "and", "or", "xor", "equal", "eq", "ne", "less", "lt", "le",
     "lessorequal", "greater", "gt", "ge", "greaterorequal", "where", "mod", "fmod",
     "remainder", "bitshift", "bitwiseand", "bitwiseor", "bitwisexor", "logicaland",
     "logicalor", "logicalxor", "biasadd", "addcmul", "addcdiv", "lerp", "floordiv",
     "floordivide", "truediv", "maskedfill", "xlogy", "hypot", "atan2",
     "copysign", "heaviside", "truedivide", "bitwiseleftshift", "bitwiserightshift")
# softmax family (max, subtract, exp, sum, divide)
_add("eltwise", L.SOFTMAX_OPS, "softmax", "logsoftmax", "hardmax", "safesoftmax")
# normalisations (inference: statistics, normalise, scale, shift)
_add("norm", 2, "batchnormalization", "batchnorm", "nativebatchnorm", "nativebatchnormlegit",
     "nativebatchnormlegitnostats", "cudnnbatchnorm", "nativebatchnormlegitfunctional",
     "batchnormwithupdate", "instancenormalizationfolded")
_add("norm", 5, "layernormalization", "layernorm", "nativelayernorm", "instancenormalization",
     "instancenorm", "groupnormalization", "groupnorm", "nativegroupnorm",
     "meanvariancenormalization", "embedlayernormalization")
_add("norm", 4, "simplifiedlayernormalization", "rmsnormalization", "rmsnorm", "fusedrmsnorm",
     "lpnormalization", "normalize", "linalgvectornorm", "norm", "renorm")
_add("norm", 6, "skiplayernormalization", "skipsimplifiedlayernormalization")
# reductions (one op per input element; ops are counted on inputs by the importers)
_add("reduce", 1, "reducemean", "reducesum", "reducemax", "reducemin", "reduceprod", "reducel1",
     "reducel2", "reducelogsum", "reducelogsumexp", "reducesumsquare", "argmax", "argmin",
     "cumsum", "cumprod", "topk", "amax", "amin", "any", "all", "prod", "var", "std",
     "varmean", "stdmean", "logsumexp", "sort", "argsort", "cummax", "cummin", "median", "mode",
     "ctcloss", "histc", "bincount", "histogram",
     "negativeloglikelihoodloss")
# gathers and scatters: one copy per output element
_add("gather", 1, "gather", "gatherelements", "gathernd", "scatter", "scatterelements",
     "scatternd", "embedding", "indexselect", "index", "indexput", "take", "embeddingbag",
     "scatteradd", "scatterreduce", "indexadd", "indexcopy", "maskedscatter", "maskedselect",
     "slicescatter", "selectscatter", "diagonalscatter", "onehot",
     "tensorscatter", "maxunpool")
# data copies: one move per output element
_add("data", 1, "transpose", "concat", "cat", "stack", "split", "slice", "pad", "constantpadnd",
     "reflectionpad1d", "reflectionpad2d", "reflectionpad3d", "replicationpad1d",
     "replicationpad2d", "replicationpad3d", "tile", "repeat", "expand", "depthtospace",
     "spacetodepth", "pixelshuffle", "pixelunshuffle", "constantofshape", "range", "arange",
     "trilu", "tril", "triu", "compress", "reversesequence", "flip", "roll", "clone",
     "contiguous", "permute", "col2im", "im2col", "unfold", "centercroppad", "eyelike",
     "zeros", "ones", "full", "emptylike", "zeroslike", "oneslike", "fulllike", "newzeros",
     "newones", "newfull", "newempty", "empty", "scalartensor", "lift", "liftfresh",
     "liftfreshcopy", "splitwithsizes", "unbind", "chunk", "narrowcopy", "sliceinverse",
     "gridsample", "affinegrid", "nonzero", "unique", "bucketize", "searchsorted",
     "randomnormal", "randomuniform", "randomnormallike", "randomuniformlike", "multinomial",
     "bernoulli", "rand", "randn", "randint", "randlike", "randnlike", "clonefloat",
     "uniform", "normal", "random", "exponential", "geometric", "lognormal", "cauchy",
     "randperm", "randintlike", "emptypermuted", "fullylike",
     "sequenceconstruct", "concatfromsequence", "splittosequence", "blackmanwindow",
     "hannwindow", "hammingwindow", "stft", "dft", "melweightmatrix")
# later additions (ONNX opsets 21-24 and torch variants)
_add("eltwise", 1, "castlike")
_add("reduce", 1, "nllloss", "nllloss2d", "nlllossforward",
     "nllloss2dforward", "mseloss", "l1loss", "smoothl1loss", "huberloss", "softmarginloss",
     "multimarginloss", "multilabelmarginloss", "multilabelmarginlossforward",
     "binarycrossentropy", "binarycrossentropywithlogits", "klloss", "kldiv", "hingeembeddingloss",
     "marginrankingloss", "cosineembeddingloss", "poissonnllloss")
_add("eltwise", 4, "logsigmoidforward")
# views and metadata: no data moves
_add("data", 0, "reshape", "flatten", "squeeze", "unsqueeze", "identity", "shape", "size",
     "constant", "dropout", "view", "unsafeview", "alias", "aliascopy", "detach", "t",
     "expandas", "viewas", "reshapeas", "select", "narrow", "asstrided", "numtotensor",
     "symsize", "symnumel", "symstride", "symstorageoffset", "dim", "optional",
     "optionalgetelement", "optionalhaselement", "sequenceat", "sequencelength",
     "sequenceempty", "sequenceinsert", "sequenceerase", "featuredropout", "alphadropout",
     "nativedropout", "scalartensorlike", "item", "localscalardense", "dense", "getitem",
     "sliceview", "diagonal", "movedim", "transposeview", "unflatten", "splitview",
     "reshapeview", "lazyfill", "tocopynoop", "assertasync",
     "unsafesplit", "unsafechunk", "unsafesplitwithsizes", "splitcopy", "bitcast",
     "assertscalar", "functionalassertasync", "symconstrainrange",
     "symconstrainrangeforsize", "constrainrange")


def lookup(name: str) -> tuple[str, float] | None:
    return _TABLE.get(canon(name))


def known(name: str) -> bool:
    return canon(name) in _TABLE


def lower(name: str, out_elems: int, in_elems: int | None = None, weights: int = 0) -> L.Layer:
    """The canonical layer of a non-MAC op. Reductions count one op per *input* element;
    everything else per output element."""
    kind, per = _TABLE[canon(name)]
    basis = in_elems if (kind == "reduce" and in_elems is not None) else out_elems
    ops = int(basis * per) if per else 0
    return L.Elementwise(category=kind, fn=name, inputs=in_elems if in_elems is not None else out_elems,
                         outputs=int(out_elems), operations=ops, weights=int(weights))


def is_view(name: str) -> bool:
    entry = lookup(name)
    return entry is not None and entry == ("data", 0)
