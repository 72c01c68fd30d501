"""Whisper's text decoder one step at a time, so a search can choose every next token.

CTranslate2 decodes freely or scores whole given sentences; it has no step-wise API, and a
one-token ``generate`` call re-runs the decoder over the whole prefix and re-projects the
encoder output (~15 ms a call here). Grammar-constrained decoding needs the model's next-token
scores for a few hypotheses at a time, a few dozen times per utterance. So the (small) tiny.en
decoder is rebuilt from the same ``model.bin``: one decoder step as an ONNX graph (int8
weights, per output column, like CTranslate2's own int8) run by ONNX Runtime (installed with
faster-whisper), with a key/value cache per hypothesis kept here. The output layer is evaluated
in numpy only on the tokens the search asks about.

Measured here, one core: a step for 4 hypotheses 1.3 ms (the same step in float32 numpy 9.5 ms:
the 33 MB of weights do not stay in the cache).

The encoder stays in CTranslate2 (int8): its output is the input here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES: dict[int, type] = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
"""CTranslate2's variable type ids (``DataType`` in its C++ API); 5 (bfloat16) is not used by tiny.en."""

HEAD_SIZE = 64

SHORTLIST = 2048
"""The output layer is evaluated on the first this-many tokens at every step (byte-pair merges
are numbered roughly by frequency), plus the tokens a search offers: log-probabilities are
normalised over those instead of all 51 864 tokens (the full layer alone would cost more than
the rest of the step)."""


class ModelFileError(ValueError):
    """``model.bin`` is not a CTranslate2 Whisper model this reader understands."""


def read_variables(path: Path, prefix: str = "decoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model file whose names start with ``prefix``.

    The layout (version 6: header, then name / shape / type / bytes per variable, then aliases)
    is the one ``ctranslate2.specs.ModelSpec`` writes.
    """
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return int(value)

    def text() -> str:
        nonlocal offset
        size = take("H")
        value = data[offset:offset + size - 1].decode("utf-8")
        offset += size
        return value

    try:
        version = take("I")
        if version < 5:
            raise ModelFileError(f"model file version {version} is older than this reader knows")
        spec = text()
        if spec != "WhisperSpec":
            raise ModelFileError(f"holds a {spec}, not a Whisper model")
        take("I")  # spec revision
        out: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = text()
            shape = [take("I") for _ in range(take("B"))]
            kind = take("B")
            size = take("I")
            if offset + size > len(data):
                raise ModelFileError("the file ends early")
            if name.startswith(prefix):
                if kind not in _DTYPES:
                    raise ModelFileError(f"{name} has a value type ({kind}) this reader does not know")
                dtype = np.dtype(_DTYPES[kind])
                raw: np.ndarray = np.frombuffer(data, dtype=dtype, count=size // dtype.itemsize, offset=offset)
                out[name[len(prefix):]] = raw.reshape(shape) if shape else raw
            offset += size
        for _ in range(take("I")):
            alias, target = text(), text()
            if alias.startswith(prefix) and target.startswith(prefix):
                out[alias[len(prefix):]] = out[target[len(prefix):]]
    except struct.error:
        raise ModelFileError("the file ends early") from None
    return out


def _quantized(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column of a (out, in) weight: the (in, out) int8 matrix and its
    scales."""
    matrix = weight.astype(np.float32).T
    scale = np.abs(matrix).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(matrix / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


class _Graph:
    """Builds one ONNX graph from the model's variables (``onnx`` is imported only here)."""

    def __init__(self, v: dict[str, np.ndarray]) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.v = v
        self.helper, self.numpy_helper, self.float = helper, numpy_helper, TensorProto.FLOAT
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self.counter = iter(range(1 << 30))

    def input(self, name: str, shape: list[Any]) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, self.float, shape))
        return name

    def output(self, name: str, shape: list[Any]) -> str:
        self.outputs.append(self.helper.make_tensor_value_info(name, self.float, shape))
        return name

    def const(self, value: Any) -> str:
        name = f"c{next(self.counter)}"
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, kind: str, *args: str, out: str | None = None, outs: Sequence[str] = (), domain: str = "",
           **attrs: Any) -> str:
        names = list(outs) or [out or f"{kind}{next(self.counter)}"]
        self.nodes.append(self.helper.make_node(kind, list(args), names, domain=domain, **attrs))
        return names[0]

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray | None = None, out: str | None = None) -> str:
        """``x @ weight.T + bias`` with int8 weights (quantized per output column) and ``x``
        quantized on the fly, as CTranslate2's int8 does."""
        matrix, scale = _quantized(weight)
        extra = [] if bias is None else [self.const(bias.astype(np.float32))]
        return self.op("DynamicQuantizeMatMul", x, self.const(matrix), self.const(scale),
                       self.const(np.zeros(len(scale), np.int8)), *extra, out=out, domain="com.microsoft")

    def linear(self, x: str, prefix: str) -> str:
        return self.dense(x, self.v[prefix + "/weight"], self.v[prefix + "/bias"])

    def norm(self, x: str, prefix: str) -> str:
        return self.op("LayerNormalization", x, self.const(self.v[prefix + "/gamma"].astype(np.float32)),
                       self.const(self.v[prefix + "/beta"].astype(np.float32)), axis=-1, epsilon=1e-5)

    def serialized(self, name: str) -> bytes:
        graph = self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        opsets = [self.helper.make_opsetid("", 17), self.helper.make_opsetid("com.microsoft", 1)]
        return bytes(self.helper.make_model(graph, opset_imports=opsets).SerializeToString())


def _layers(v: dict[str, np.ndarray]) -> int:
    count = 0
    while f"layer_{count}/self_attention/linear_0/weight" in v:
        count += 1
    return count


def cross_graph(v: dict[str, np.ndarray], heads: int) -> bytes:
    """The encoder output's keys and values for every layer's cross-attention (once per utterance).

    Input ``encoded`` (frames x width); outputs ``cross_k{i}`` (1 x heads x 64 x frames) and
    ``cross_v{i}`` (1 x heads x frames x 64), the layouts :func:`step_graph` multiplies with.
    """
    g = _Graph(v)
    width = v["embeddings/weight"].shape[1]
    encoded = g.input("encoded", ["F", width])
    split = g.const(np.array([width, width], np.int64))
    shape = g.const(np.array([1, -1, heads, HEAD_SIZE], np.int64))
    for layer in range(_layers(v)):
        keys, values = f"k{layer}", f"v{layer}"
        g.op("Split", g.linear(encoded, f"layer_{layer}/attention/linear_1"), split, outs=(keys, values), axis=1)
        g.op("Transpose", g.op("Reshape", keys, shape), perm=[0, 2, 3, 1],
             out=g.output(f"cross_k{layer}", [1, heads, HEAD_SIZE, "F"]))
        g.op("Transpose", g.op("Reshape", values, shape), perm=[0, 2, 1, 3],
             out=g.output(f"cross_v{layer}", [1, heads, "F", HEAD_SIZE]))
    return g.serialized("whisper_cross_attention")


def step_graph(v: dict[str, np.ndarray], heads: int, shortlist: int) -> bytes:
    """One decoder step for a batch of hypotheses.

    Inputs: ``x`` (batch x width: token embedding + position), per layer ``past_k{i}`` /
    ``past_v{i}`` (batch x steps x width) and :func:`cross_graph`'s outputs.
    Outputs: ``hidden`` (after the final layer norm), ``scores`` (batch x ``shortlist``: the
    output layer on the first ``shortlist`` tokens), ``present_k{i}`` / ``present_v{i}``.
    """
    g = _Graph(v)
    width = v["embeddings/weight"].shape[1]
    g.input("x", ["B", width])
    g.output("hidden", ["B", width])
    g.output("scores", ["B", shortlist])
    scale = g.const(np.float32(HEAD_SIZE ** -0.5))
    flat = g.const(np.array([-1, width], np.int64))
    query_shape = g.const(np.array([-1, heads, 1, HEAD_SIZE], np.int64))
    cache_shape = g.const(np.array([0, -1, heads, HEAD_SIZE], np.int64))
    axis1 = g.const(np.array([1], np.int64))

    def attend(query: str, keys: str, values: str) -> str:
        weights = g.op("Softmax", g.op("MatMul", g.op("Reshape", query, query_shape), keys), axis=-1)
        return g.op("Reshape", g.op("MatMul", weights, values), flat)

    x = "x"
    for layer in range(_layers(v)):
        p = f"layer_{layer}/"
        past_k = g.input(f"past_k{layer}", ["B", "T", width])
        past_v = g.input(f"past_v{layer}", ["B", "T", width])
        cross_k = g.input(f"cross_k{layer}", [1, heads, HEAD_SIZE, "F"])
        cross_v = g.input(f"cross_v{layer}", [1, heads, "F", HEAD_SIZE])
        q, k, val = (f"{n}{layer}" for n in ("q", "k", "v"))
        g.op("Split", g.linear(g.norm(x, p + "self_attention/layer_norm"), p + "self_attention/linear_0"),
             g.const(np.array([width] * 3, np.int64)), outs=(q, k, val), axis=1)
        keys = g.op("Concat", past_k, g.op("Unsqueeze", k, axis1), axis=1,
                    out=g.output(f"present_k{layer}", ["B", "T1", width]))
        values = g.op("Concat", past_v, g.op("Unsqueeze", val, axis1), axis=1,
                      out=g.output(f"present_v{layer}", ["B", "T1", width]))
        attended = attend(g.op("Mul", q, scale),
                          g.op("Transpose", g.op("Reshape", keys, cache_shape), perm=[0, 2, 3, 1]),
                          g.op("Transpose", g.op("Reshape", values, cache_shape), perm=[0, 2, 1, 3]))
        x = g.op("Add", x, g.linear(attended, p + "self_attention/linear_1"))
        query = g.op("Mul", g.linear(g.norm(x, p + "attention/layer_norm"), p + "attention/linear_0"), scale)
        x = g.op("Add", x, g.linear(attend(query, cross_k, cross_v), p + "attention/linear_2"))
        inner = g.linear(g.norm(x, p + "ffn/layer_norm"), p + "ffn/linear_0")
        erf = g.op("Erf", g.op("Mul", inner, g.const(np.float32(0.5 ** 0.5))))
        gelu = g.op("Mul", g.op("Mul", inner, g.const(np.float32(0.5))), g.op("Add", erf, g.const(np.float32(1.0))))
        x = g.op("Add", x, g.linear(gelu, p + "ffn/linear_1"))
    hidden = g.op("Identity", g.norm(x, "layer_norm"), out="hidden")
    g.dense(hidden, v["embeddings/weight"][:shortlist], out="scores")
    return g.serialized("whisper_decoder_step")


class Decoder:
    """The decoder of a CTranslate2 Whisper model, one step at a time (see the module doc)."""

    def __init__(self, path: Path, threads: int = 1, shortlist: int = SHORTLIST) -> None:
        import onnxruntime

        v = read_variables(Path(path))
        try:
            heads = int(v["num_heads"][0])
            self.embeddings = v["embeddings/weight"].copy()  # a copy: the file's other 35 MB can go
            self.positions = v["position_encodings/encodings"].astype(np.float32)
            self.layers = _layers(v)
            if not self.layers:
                raise ModelFileError("the decoder has no layers")
            self.shortlist = min(shortlist, self.embeddings.shape[0])
            graphs = cross_graph(v, heads), step_graph(v, heads, self.shortlist)
        except KeyError as exc:
            raise ModelFileError(f"the decoder has no {exc.args[0]}") from None
        self.width = self.embeddings.shape[1]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._cross, self._step = (onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                                   for graph in graphs)

    def start(self, encoded: np.ndarray, prefix: list[int]) -> DecoderState:
        """The state after ``prefix`` (start tokens), for one utterance's encoder output
        (frames x width)."""
        names = [o.name for o in self._cross.get_outputs()]
        cross = dict(zip(names, self._cross.run(None, {"encoded": encoded.astype(np.float32)}), strict=True))
        empty = np.zeros((1, 0, self.width), np.float32)
        state = DecoderState(self, cross, [empty] * (2 * self.layers), np.zeros((1, self.width), np.float32),
                             np.zeros((1, self.shortlist), np.float32))
        for token in prefix:
            state = state.step(np.array([token]), np.array([0]))
        return state

    def logits(self, hidden: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Scores (before the softmax) of ``tokens`` for each row of ``hidden``."""
        return hidden @ self.embeddings[tokens].astype(np.float32).T


class DecoderState:
    """A batch of hypotheses: their key/value caches and last hidden vectors."""

    def __init__(self, decoder: Decoder, cross: dict[str, np.ndarray], caches: list[np.ndarray],
                 hidden: np.ndarray, scores: np.ndarray) -> None:
        self.decoder = decoder
        self.cross = cross
        self.caches = caches
        """``past_k0, past_v0, past_k1, ...``: batch x steps x width each."""
        self.hidden = hidden
        self.scores = scores
        """The output layer on the decoder's shortlist (batch x shortlist)."""

    def step(self, tokens: np.ndarray, parents: np.ndarray) -> DecoderState:
        """Append ``tokens[i]`` to hypothesis ``parents[i]``: the new batch's state."""
        d = self.decoder
        position = self.caches[0].shape[1]
        feed = dict(self.cross)
        feed["x"] = d.embeddings[tokens].astype(np.float32) + d.positions[position]
        for index, cache in enumerate(self.caches):
            feed[f"past_{'kv'[index % 2]}{index // 2}"] = cache[parents]
        hidden, scores, *caches = d._step.run(None, feed)
        return DecoderState(d, self.cross, caches, hidden, scores)
