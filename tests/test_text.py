"""Text to scene: captions from labels, the tokenizer and encoder, text-conditioned diffusion (tiny, a few steps)."""

import dataclasses
import json
import math

import pytest
import torch

from armlab_scripts import cli as armlab_cli
from generative import diffusion as D
from generative.diffusion.text import prompt_tokens
from generative.text import (
    SIDE_MARGIN,
    LayoutHead,
    Vocabulary,
    caption_conditions,
    captions,
    colour_name,
    label_vectors,
    prepare_text,
    pretrain_layout_head,
    side_margin,
    side_of,
    squeeze_sides,
    text_data,
)
from generative.text.captions import SIDE_CUTS
from generative.training import TrainConfig
from robot_env.io.errors import ConfigError, ParamError
from robot_env.io.threads import torch_threads

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset(n=24, size=16, seed=0)


LABEL = {"class_name": "sphere", "class_id": 2, "target": {"pixel_norm": [0.1, 0.6]},
         "objects": [{"is_target": True, "category": "sphere", "color": [0.85, 0.12, 0.1]},
                     {"is_target": False, "category": "cube", "color": [0.1, 0.35, 0.85]},
                     {"is_target": False, "category": "cube", "color": [0.1, 0.7, 0.25]}]}


def test_captions_are_seeded_and_name_the_targets_shape_colour_and_side():
    a = captions(LABEL, 6, seed=3, index=5)
    assert a == captions(LABEL, 6, seed=3, index=5)
    assert a != captions(LABEL, 6, seed=4, index=5)
    assert len(set(a)) > 1  # several phrasings
    for text in a:
        assert caption_conditions(text) == {"class_id": 2, "side": "left"}, text
        assert "red" in text and any(w in text for w in ("near", "front", "close")), text
        assert "two cubes" in text, text
    right = dict(LABEL, target={"pixel_norm": [0.9, 0.3]})
    assert all(caption_conditions(t)["side"] == "right" for t in captions(right, 4))
    assert "wood" in captions(dict(LABEL, table_texture="wood"), 1)[0]
    assert [colour_name(c) for c in ([0.1, 0.35, 0.85], [0.95, 0.95, 0.95], [0.2, 0.2, 0.2], [0.95, 0.8, 0.1])] == \
        ["blue", "white", "black", "yellow"]
    assert [side_of(u) for u in (0.1, 0.5, 0.9)] == ["left", "centre", "right"]
    assert caption_conditions("a ball in the center")["class_id"] == 2
    assert caption_conditions("a red box at the right, next to a sphere") == {"class_id": 0, "side": "right"}


def test_captions_of_a_dataset_follow_its_labels(dataset):
    data, texts, labels, classes = text_data(dataset, 16, seed=0)
    assert len(texts) == len(data["image"]) == len(labels) and len(texts[0]) == 4
    for row, y, t in zip(texts, data["class_id"].tolist(), data["target"].tolist()):
        for text in row:
            read = caption_conditions(text, classes)
            assert read["class_id"] == y and read["side"] == side_of(t[0]), (text, y, t)
    assert text_data(dataset, 16, seed=0)[1] == texts


def test_prompt_layouts_draw_frames_of_the_named_class_on_the_named_side():
    from generative.text import prompt_layouts, side_of

    ids = [0, 0, 1, 1, 2, 2, 2]
    uv = [(0.1, 0.5), (0.9, 0.5), (0.2, 0.6), (0.5, 0.4), (0.8, 0.7), (0.15, 0.3), (0.5, 0.5)]
    got = prompt_layouts("a red sphere on the right of the table", ids, uv, 20, seed=3)
    assert got["class_id"].tolist() == [2] * 20 and {tuple(t) for t in got["target"]} == {(0.8, 0.7)}
    left = prompt_layouts("a cube at the left", ids, uv, 5, seed=1)["target"]
    assert all(side_of(u) == "left" for u, _ in left)
    again = prompt_layouts("a cylinder", ids, uv, 30, seed=7)
    assert set(again["class_id"].tolist()) == {1} and len({tuple(t) for t in again["target"]}) == 2
    assert (again["target"] == prompt_layouts("a cylinder", ids, uv, 30, seed=7)["target"]).all()
    # no cylinder on the right: the side gives way to the class; a class without frames is an error
    assert set(prompt_layouts("a cylinder on the right", ids, uv, 8)["class_id"].tolist()) == {1}
    with pytest.raises(ValueError, match="cube"):
        prompt_layouts("a cube", [1, 2], [(0.5, 0.5), (0.2, 0.2)], 2)


def test_vocabulary_unknown_words_and_json():
    v = Vocabulary.build(["a red cube", "a blue sphere on the left"])
    ids = v.encode(["a red zorblax", ""])
    assert ids[0, 3].item() == 1 and ids[1, 0].item() == 2 and ids[1, 1].item() == 0  # <unk>, <cls>, <pad>
    assert Vocabulary.from_json(json.loads(json.dumps(v.to_json()))).tokens == v.tokens
    assert v.unknown("a red zorblax") == ["zorblax"]
    with pytest.raises(ConfigError, match="empty"):
        Vocabulary(["<pad>", "<unk>", "<cls>"])
    with pytest.raises(ParamError):
        v.encode([3])


def test_text_encoder_pretraining_loss_falls(dataset):
    _, texts, labels, _ = text_data(dataset, 16, seed=0)
    assert label_vectors(labels).shape[0] == len(labels)
    vocab, enc, tokens, losses = prepare_text(texts, labels, steps=60, seed=0)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    h, mask, pooled = enc(tokens[:, 0])
    assert h.shape[:2] == tokens[:, 0].shape and pooled.shape == (len(texts), enc.dim)
    assert prepare_text(texts, labels, steps=5, seed=0)[3] == prepare_text(texts, labels, steps=5, seed=0)[3]


def test_the_layout_head_learns_where_and_what_a_sentence_names_and_samples_inside_it():
    # stand-in sentence embeddings: one per (class, side); the frames' targets anywhere inside that side's third
    gen = torch.Generator().manual_seed(0)
    n, dim = 600, 8
    cls, side = torch.randint(0, 3, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen)
    emb = torch.zeros(n, dim)
    emb[torch.arange(n), cls] = 1
    emb[torch.arange(n), 3 + side] = 1
    targets = torch.stack([(side + torch.rand(n, generator=gen)) / 3, torch.rand(n, generator=gen)], 1)
    tokens = torch.arange(n)[:, None, None]  # "tokens" are row numbers: embed() looks the stand-ins up
    torch.manual_seed(0)
    head = LayoutHead(dim, 3)
    losses = pretrain_layout_head(head, lambda t: emb[t[:, 0]], tokens, cls, targets, steps=150, seed=0)
    floor = math.log(8) + math.log(24)  # the entropy left: u uniform over a side's 8 bins, v over all 24
    assert sum(losses[:10]) / 10 > floor + 1.5 and sum(losses[-10:]) / 10 < floor + 0.3 and not head.training
    y, uv = head.sample(emb, torch.Generator().manual_seed(1))
    assert (y == cls).float().mean() > 0.95
    assert (torch.floor(uv[:, 0] * 3).long().clamp(0, 2) == side).float().mean() > 0.95  # side cuts: bin edges
    assert ((uv >= 0) & (uv <= 1)).all()
    again = head.sample(emb, torch.Generator().manual_seed(1))
    assert torch.equal(y, again[0]) and torch.equal(uv, again[1])
    # with a side margin: the same draws (class, row, side), each target's column at least the margin from the cuts
    ym, uvm = head.sample(emb, torch.Generator().manual_seed(1), side_margin=0.05)
    assert torch.equal(ym, y) and torch.equal(uvm[:, 1], uv[:, 1])
    assert [side_of(float(u)) for u in uvm[:, 0]] == [side_of(float(u)) for u in uv[:, 0]]
    assert (uvm[:, 0, None] - torch.tensor(SIDE_CUTS)).abs().min() >= 0.05 - 1e-6
    near = (uv[:, 0, None] - torch.tensor(SIDE_CUTS)).abs().min(1).values < 0.05
    assert near.any() and not torch.equal(uvm[:, 0], uv[:, 0])


def test_squeeze_sides_moves_targets_off_the_cuts_and_keeps_their_side_and_order():
    u = torch.linspace(0, 1, 2001)
    assert torch.equal(squeeze_sides(u, 0.0), u)
    for m in (0.02, SIDE_MARGIN, 0.1):
        v = squeeze_sides(u, m)
        assert [side_of(float(a)) for a in v] == [side_of(float(a)) for a in u]
        assert (v[:, None] - torch.tensor(SIDE_CUTS)).abs().min() >= m - 1e-6
        assert (v[1:] >= v[:-1]).all() and v[0] == 0 and v[-1] == 1  # order kept; the table's own edges stay
    assert side_margin(None) == SIDE_MARGIN and side_margin(0) == 0.0
    for bad in (-0.01, 1 / 6, 0.5, float("nan"), "wide"):
        with pytest.raises(ParamError, match="side_margin"):
            side_margin(bad)


TINY = dict(batch_size=4, tensorboard=False, log_every=2, sample_every=1000, checkpoint_every=1000, n_samples=4,
            progress=False)


def fit(data, out, steps, **kw):
    train = TrainConfig(out=out, steps=steps, **{**D.TRAIN_DEFAULTS, **TINY})
    return D.train_diffusion(data, train, size=16, cond="text", model="tiny", text_steps=20, **kw)


@pytest.fixture(scope="module")
def text_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    with torch_threads(1):  # a module fixture runs before the function-scoped one_thread
        return out, fit(dataset, out, 6)


def test_text_diffusion_trains_and_a_captions_words_change_the_sample(text_run):
    out, s = text_run
    assert s["cond"] == ["text"] and all(torch.isfinite(torch.tensor(list(s["losses"].values()))))
    assert s["text_pretrain_loss"][1] < s["text_pretrain_loss"][0]
    assert (out / "vocab.json").is_file() and json.loads((out / "vocab.json").read_text())["tokens"][:3] == \
        ["<pad>", "<unk>", "<cls>"]
    pipe = D.load_pipeline(out)

    def draw(prompt, guidance=2.0):
        tok = prompt_tokens(pipe.cfg, prompt, 2)
        return pipe.generate(2, tokens=tok, steps=3, guidance=guidance, generator=torch.Generator().manual_seed(0))

    a, b = draw("a red cube on the left of the table"), draw("a red sphere on the right of the table")
    assert (a - b).abs().max() > 1e-3  # same noise, different words, different image
    assert torch.equal(draw("a red cube on the left of the zorblax"), draw("a red cube on the left of the <unk>"))
    torch.testing.assert_close(draw("", 3.0), draw("a red sphere", 0.0), atol=1e-5, rtol=0)  # empty == uncond
    # the layout head's class and place reach the UNet: the same caption and noise, another place, another image
    assert s["layout_pretrain_loss"][1] < s["layout_pretrain_loss"][0] and pipe.cfg.text_layout
    tok = prompt_tokens(pipe.cfg, "a red cube on the left of the table", 2)

    def placed(u):
        return pipe.generate(2, torch.tensor([0, 0]), torch.tensor([[u, 0.5]] * 2), steps=3, guidance=2.0,
                             generator=torch.Generator().manual_seed(0), tokens=tok)

    assert (placed(0.15) - placed(0.85)).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="prompt"):
        pipe.generate(2, steps=2)
    with pytest.raises(ParamError):
        prompt_tokens(pipe.cfg, 7, 2)


@pytest.mark.slow  # three short trainings, each ending on a sample grid: ~19 s on the busy 2-core machine
def test_text_diffusion_resumed_equals_straight(dataset, tmp_path):
    fit(dataset, tmp_path / "a", 2)
    fit(dataset, tmp_path / "a", 4)
    fit(dataset, tmp_path / "b", 4)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["modules"]["unet"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["modules"]["unet"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_text_cond_stands_alone_and_old_configs_load():
    with pytest.raises(ParamError, match="alone"):
        D.parse_cond("class,text")
    old = D.DiffusionConfig(size=16, cond=("class",), model="tiny").to_dict()
    old.pop("text_config")
    assert D.DiffusionConfig.from_dict(old).cond == ("class",) and not D.DiffusionConfig.from_dict(old).text_layout
    with pytest.raises(ConfigError, match="text_layout"):
        D.DiffusionConfig(size=16, cond=("class",), model="tiny", text_layout=True)
    assert dataclasses.fields(D.DiffusionConfig)


def test_cli_prompt(text_run, tmp_path, capsys):
    out, _ = text_run
    code = armlab_cli.main(["diffusion", "sample", "--run", str(out), "--n", "2", "--steps", "2", "--threads", "1",
                            "--prompt", "a red ball on the left near the zorblax", "--out", str(tmp_path / "s")])
    assert code == 0
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["settings"]["prompt"].startswith("a red ball")
    assert manifest["settings"]["guidance"] == D.TEXT_GUIDANCE > 2.0  # a text run's stronger default scale
    pipe = D.load_pipeline(out)  # the pipeline's default is the run's too: the same images as the explicit scale
    tok = prompt_tokens(pipe.cfg, "a red ball on the left", 2)

    def draw(**kw):
        return pipe.generate(2, tokens=tok, steps=2, generator=torch.Generator().manual_seed(3), **kw)

    assert torch.equal(draw(), draw(guidance=D.TEXT_GUIDANCE)) and not torch.equal(draw(), draw(guidance=2.0))
    assert "zorblax" in capsys.readouterr().err
    # the layout keeps SIDE_MARGIN from the side cuts unless told otherwise: recorded, and the pipeline's default
    assert manifest["settings"]["side_margin"] == SIDE_MARGIN > 0
    assert torch.equal(draw(), draw(side_margin=SIDE_MARGIN))
    mid = prompt_tokens(pipe.cfg, "a red ball in the centre of the table", 8)
    _, free = pipe.unet.draw_layout(mid, torch.Generator().manual_seed(5), 0.0)
    _, kept = pipe.unet.draw_layout(mid, torch.Generator().manual_seed(5), 0.15)
    assert (kept[:, 0, None] - torch.tensor(SIDE_CUTS)).abs().min() >= 0.15 - 1e-6 and not torch.equal(kept, free)


@pytest.mark.parametrize("command", [["diffusion", "sample"], ["diffusion", "eval"], ["stackgan", "sample"],
                                     ["stackgan", "eval"], ["gan", "sample"]])
def test_side_margin_help_states_the_default_in_use(command, capsys):
    assert armlab_cli.main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--side-margin M" in text and f"(default {SIDE_MARGIN:g};" in text


def test_cli_prompt_errors_are_one_sentence(text_run, dataset, tmp_path, capsys):
    out, _ = text_run
    plain = tmp_path / "plain"
    D.train_diffusion(dataset, TrainConfig(out=plain, steps=1, **{**D.TRAIN_DEFAULTS, **TINY}), size=16,
                      cond="class", model="tiny")
    capsys.readouterr()
    assert armlab_cli.main(["diffusion", "sample", "--run", str(plain), "--n", "1", "--prompt", "a red cube",
                            "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--prompt" in err[0] and "not conditioned on text" in err[0]
    broken = tmp_path / "empty_vocab"
    broken.mkdir()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["task_config"]["text_config"]["vocab"]["tokens"] = ["<pad>", "<unk>", "<cls>"]
    torch.save(ckpt, broken / "checkpoint.pt")
    assert armlab_cli.main(["diffusion", "sample", "--run", str(broken), "--n", "1", "--prompt", "a red cube",
                            "--out", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "vocabulary is empty" in err[0], err
