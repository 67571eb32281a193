"""The devc networks against the official code's golden arrays (GOLDEN.md).

float64 with the seeded weights: every array within 1e-9 relative, the hard warp's copied
colours within the rounding of their 4x4 means, and every argmax either the golden one or one
whose cosine ties it within rounding; float32: within the tolerances GOLDEN.md states for the
official float32 run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tolerance import F32_EPS, F64_EPS, assert_close, assert_same_choice, top_two_gap
from vidcolor.color.lab import uncenter_lab
from vidcolor.color.official import official_lab_to_rgb
from vidcolor.errors import OptionError
from vidcolor.engines.devc.colorization import UpsampleConv, phase_kernels
from vidcolor.engines.devc.correspondence import warp
from vidcolor.engines.devc.engine import DevcEngine, check_working_size, valid_working_size
from vidcolor.engines.devc.layers import conv_add_relu, conv_relu, interleave_phases, max_pool_2x2
from vidcolor.engines.devc.network import build_colorization, build_correspondence, build_vgg19
from vidcolor.engines.devc.vgg19 import caffe_preprocess, gray_to_rgb, normalize_features
from vidcolor.weights.convert import CHECKPOINTS, official_layout, remap_official
from seeded_weights import seeded_official_state_dict

GOLDEN = Path(__file__).parent / "fixtures" / "golden_modules.npz"
REL_TOL_FLOAT64 = 1e-9
# Cosines of unit embeddings each within REL_TOL_FLOAT64 of the golden's: |d(a.b)| <= |da| + |db|.
COSINE_TOL = 2 * REL_TOL_FLOAT64
# The warp copies 4x4 means of centred Lab (|value| < 128): 16 roundings of an ulp of 128.
POOLED_COLOR_TOL = 16 * 128 * F64_EPS
UPSAMPLE = 4  # feature grid -> network size, nearest (REFERENCE.md §4)
BF16_UNIT_ROUNDOFF = 2.0 ** -9  # bfloat16 keeps 8 significant bits
VGG_CONVS_BEFORE = {"r22": 4, "r32": 6, "r42": 10, "r52": 14}  # VGG19 conv layers up to each output
VGG_LAYERS = ("r22", "r32", "r42", "r52")
# golden_modules.json -> weights.checksums (the official generator's seeded weights).
SEEDED_CHECKSUMS = {
    "vgg19_conv": (-21.67952447757706, 161395.01145254946,
                   (-0.06482590728201534, -0.1813323786927099, 0.15029740647045076, -0.04891300763833662)),
    "nonlocal_net": (-28.946727673089715, 68870.95335181519,
                     (-0.009924399684619372, -0.02776073760264174, 0.0230094972197677, -0.007488244406173801)),
    "colornet": (26.541732343360408, 266002.6935013564,
                 (-0.04243851815914633, -0.11870990732939149, 0.09839274884376945, -0.03202107999580439)),
}


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def official64():
    return {kind: seeded_official_state_dict(kind) for kind in CHECKPOINTS}


@pytest.fixture(scope="module")
def weights64(official64):
    # The same as seeded_converted(torch.float64), without drawing 60 M values again.
    return {kind: remap_official(kind, state) for kind, state in official64.items()}


def cast(weights, dtype):
    return {kind: {name: value.to(dtype) for name, value in tensors.items()} for kind, tensors in weights.items()}


@pytest.fixture(scope="module")
def engine64(weights64):
    return DevcEngine(weights64, "cpu", torch.float64)


@pytest.fixture(scope="module")
def modules64(weights64):
    built = {}
    for kind, builder in (("vgg19_conv", build_vgg19), ("nonlocal_net", build_correspondence),
                          ("colornet", build_colorization)):
        with torch.device("meta"):  # skip the random init of 60 M parameters
            module = builder()
        module.load_state_dict(weights64[kind], strict=True, assign=True)
        built[kind] = module.eval().requires_grad_(False)
    return built


def assert_rel(actual: torch.Tensor, expected: np.ndarray, rel: float = REL_TOL_FLOAT64):
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape
    error = np.abs(actual - expected).max() / np.abs(expected).max()
    assert error <= rel, f"relative error {error:.3g} > {rel:g}"


def batch(golden, key):
    return torch.from_numpy(golden[key])[None]


@pytest.mark.parametrize("kind", CHECKPOINTS)
def test_seeded_weights_match_the_official_generator(kind, official64):
    state = official64[kind]
    assert list(state) == list(official_layout(kind))
    total, total_abs, first = SEEDED_CHECKSUMS[kind]
    assert sum(v.sum().item() for v in state.values()) == pytest.approx(total, rel=1e-12)
    assert sum(v.abs().sum().item() for v in state.values()) == pytest.approx(total_abs, rel=1e-12)
    # Exact by construction: integer generator bits, then correctly rounded (2u - 1) * b.
    assert next(iter(state.values())).flatten()[:4].tolist() == list(first)


def test_vgg_features_float64(golden, modules64):
    vgg = modules64["vgg19_conv"]
    with torch.inference_mode():
        ref_rgb = official_lab_to_rgb(uncenter_lab(batch(golden, "ref_lab_half")))
        for feature, layer in zip(vgg(caffe_preprocess(ref_rgb)), VGG_LAYERS):
            assert_rel(feature[0], golden[f"ref_vgg_{layer}"])
        gray = gray_to_rgb(batch(golden, "frame0_lab_half")[:, :1])
        # Exact by construction: (L + 50) / 100 elementwise (correctly rounded), repeated x3.
        assert np.array_equal(gray[0].numpy(), golden["frame0_gray_rgb_for_vgg"])
        for feature, layer in zip(vgg(caffe_preprocess(gray)), VGG_LAYERS):
            assert_rel(feature[0], golden[f"frame0_vgg_{layer}"])


@pytest.fixture(scope="module")
def golden_embeddings(golden, modules64):
    """The float64 modules' reference embedding and each golden frame's (L half, theta)."""
    vgg, corr_net, _ = (modules64[k] for k in CHECKPOINTS)
    with torch.inference_mode():
        ref_half = batch(golden, "ref_lab_half")
        ref_features = vgg(caffe_preprocess(official_lab_to_rgb(uncenter_lab(ref_half))))
        reference = corr_net.embed_reference([normalize_features(f) for f in ref_features], ref_half)
        frames = {}
        for frame in ("frame0", "frame1"):
            l_half = batch(golden, f"{frame}_lab_half")[:, :1]
            features = [normalize_features(f) for f in vgg(caffe_preprocess(gray_to_rgb(l_half)))]
            theta = corr_net.embed_frames(features)
            frames[frame] = (l_half, theta)
    return reference, frames


def cosines(theta, reference):
    """(N, M) cosines of one frame's embedding against the reference's."""
    return theta[0].transpose(0, 1) @ reference.features


def test_correspondence_and_colorization_float64(golden, modules64, golden_embeddings):
    color_net = modules64["colornet"]
    reference, frames = golden_embeddings
    with torch.inference_mode():
        previous = torch.zeros_like(batch(golden, "ref_lab_half"))  # exemplar mode (test.py:80)
        for frame, (l_half, theta) in frames.items():
            warped, similarity = warp(theta, reference, 1e-10)
            scores = cosines(theta, reference)
            assert_warp_matches(warped[0], golden[f"{frame}_nonlocal_lab"], scores, reference.grid)
            if frame == "frame0":
                assert_warp_matches(warped[0], golden["frame0_warped_lab_T1e-10"], scores, reference.grid)
                assert_rel(similarity[0], golden["frame0_similarity_T1e-10"])
                golden_argmax = torch.from_numpy(golden["frame0_corr_argmax"]).long().flatten()
                assert_same_choice(scores, scores.argmax(dim=1), golden_argmax, COSINE_TOL)
                soft, _ = warp(theta, reference, 0.01)  # the training temperature: the soft path
                assert_rel(soft[0], golden["frame0_warped_lab_T0.01"])
            colornet_input = torch.cat((l_half, warped[:, 1:], similarity, previous), dim=1)
            assert_rel(colornet_input[0], golden[f"{frame}_colornet_input"])
            ab = color_net(colornet_input)
            assert_rel(ab[0], golden[f"{frame}_ab_pred_half"])
            previous = torch.cat((l_half, ab), dim=1)  # the recurrence (test.py:96)


def assert_warp_matches(warped, expected, scores, grid):
    """Hard-warp colours at network size against the golden: equal within the pooled means'
    rounding wherever the best cosine leads the runner-up by more than the cosines' rounding
    (elsewhere the pick is a near-tie, which may go either way: too few to matter, counted)."""
    decided = top_two_gap(scores) > 2 * COSINE_TOL
    assert decided.float().mean() > 0.95, "too many near-ties"
    mask = decided.view(grid).repeat_interleave(UPSAMPLE, 0).repeat_interleave(UPSAMPLE, 1)
    warped = warped.numpy() if isinstance(warped, torch.Tensor) else warped
    assert_close(warped[..., mask.numpy()], expected[..., mask.numpy()], POOLED_COLOR_TOL)


@pytest.fixture(scope="module")
def golden_scores(golden_embeddings):
    """The (N, M) cosines of each golden frame against the reference, from the float64 modules."""
    reference, frames = golden_embeddings
    with torch.inference_mode():
        scores = {frame: cosines(theta, reference) for frame, (_, theta) in frames.items()}
    return scores, reference.grid


def _engine_run(golden, engine, frames=("frame0", "frame1")):
    ref = engine.prepare_reference(batch(golden, "ref_lab_full"))
    frames_l = torch.cat([batch(golden, f"{f}_lab_full")[:, :1] for f in frames])
    corr = engine.correspond(frames_l, ref)  # the frame side batched over both frames
    state = engine.initial_state(ref, propagate=False)
    outputs = []
    for i in range(len(frames)):
        ab, state = engine.step(frames_l[i : i + 1], corr[i], state)
        outputs.append(ab)
    return corr, outputs, state


def test_engine_float64_end_to_end(golden, engine64, golden_scores):
    engine = engine64
    corr, outputs, state = _engine_run(golden, engine)
    scores, grid = golden_scores
    for i in range(2):
        assert_warp_matches(corr.warped_ab[i], golden[f"frame{i}_nonlocal_lab"][1:], scores[f"frame{i}"], grid)
    assert_rel(corr.confidence[0], golden["frame0_similarity_T1e-10"])
    for i, ab in enumerate(outputs):
        assert ab.shape == (1, 2, 40, 80) and ab.dtype == torch.float64
        assert_rel(ab[0], golden[f"frame{i}_ab_pred_half"])
    assert_rel(state[0, 1:], golden["frame1_ab_pred_half"])
    assert_rel(state[0, :1], golden["frame1_lab_half"][:1])
    assert engine.output_size(80, 160) == (40, 80)


def test_engine_float32_within_golden_tolerances(golden, weights64):
    engine = DevcEngine(cast(weights64, torch.float32), "cpu", torch.float32)
    corr, outputs, _ = _engine_run(golden, engine)
    # GOLDEN: official float32 vs this float64 golden: similarity <= 2.3e-6, warp <= 7.1e-6 where
    # the argmax agrees, ab <= 2.3e-3 (frame 0) and <= 4.0e-2 (frame 1).
    np.testing.assert_allclose(corr.confidence[0].numpy(), golden["frame0_similarity_T1e-10"], atol=1e-5)
    same_block = np.isclose(corr.warped_ab[0].numpy(), golden["frame0_nonlocal_lab"][1:], atol=1e-4)
    assert same_block.mean() > 0.98  # an argmax may flip on a near tie: a few 4x4 blocks at most
    np.testing.assert_allclose(outputs[0][0].numpy(), golden["frame0_ab_pred_half"], atol=5e-3)
    np.testing.assert_allclose(outputs[1][0].numpy(), golden["frame1_ab_pred_half"], atol=8e-2)


def test_engine_float64_uses_float32_checkpoint_values_unrounded_further(weights64):
    weights32 = cast(weights64, torch.float32)
    engine = DevcEngine(weights32, "cpu", torch.float64)
    param = engine.colorization.enc1.conv1.weight
    assert param.dtype == torch.float64
    assert torch.equal(param, weights32["colornet"]["enc1.conv1.weight"].double())


def test_propagation_starts_from_the_reference(golden, engine64):
    engine = engine64
    ref = engine.prepare_reference(batch(golden, "ref_lab_full"))
    # The bilinear 0.5 of float32 Lab (|value| < 128): 2x2 means, a few roundings of an ulp of 128.
    assert_close(engine.initial_state(ref, propagate=True)[0], golden["ref_lab_half"], 4 * 128 * F64_EPS)
    assert not engine.initial_state(ref, propagate=False).any()


def test_batched_frame_side_equals_frame_by_frame(engine64):
    # Synthetic smooth frames at the smallest working size (64x64) keep float64 cheap.
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 64, dtype=torch.float64),
                                torch.linspace(-1, 1, 64, dtype=torch.float64), indexing="ij")
    frames_l = torch.stack([40 * torch.sin(3 * rows + k) * torch.cos(2 * cols - k) for k in range(3)])[:, None]
    reference = torch.stack((frames_l[0, 0], 30 * rows, -20 * cols))[None]
    ref = engine64.prepare_reference(reference)
    together = engine64.correspond(frames_l, ref)
    assert together.warped_ab.shape == (3, 2, 32, 32) and together.extra["l_half"].shape == (3, 1, 32, 32)
    for i in range(3):
        alone = engine64.correspond(frames_l[i : i + 1], ref)
        # Convolutions of another batch size may sum in another order: the chosen cosines agree
        # within ulps, and an argmax may flip only on a near-tie (a few 4x4 blocks at most).
        torch.testing.assert_close(together[i].confidence, alone.confidence, rtol=0, atol=1e-13)
        same = (together[i].warped_ab == alone.warped_ab).all(dim=1)
        assert same.float().mean() > 0.95
        torch.testing.assert_close(together[i].extra["l_half"], alone.extra["l_half"], rtol=0,
                                   atol=4 * 64 * F64_EPS)  # 2x2 means of |L| <= 50


def test_upsample_conv_by_phases_equals_upsample_then_conv():
    torch.manual_seed(0)
    conv = UpsampleConv(5, 7).double()
    x = torch.randn(2, 5, 6, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(x), conv.forward_reference(x), rtol=1e-12, atol=1e-12)
    assert phase_kernels(conv.weight).shape == (4, 7, 5, 2, 2)


@pytest.mark.parametrize("size, ok", [((432, 768), True), ((80, 160), True), ((64, 64), True),
                                      ((216, 384), False), ((48, 64), False), ((64, 80), False)])
def test_working_size_rule(size, ok):
    if ok:
        check_working_size(*size)
        assert valid_working_size(*size) == size
    else:
        with pytest.raises(OptionError, match=f"{size[0]}x{size[1]}.*nearest valid size"):
            check_working_size(*size)
        good = valid_working_size(*size)
        check_working_size(*good)
        assert good[0] >= size[0] and good[1] >= size[1]


def test_engine_refuses_bad_inputs(golden, engine64, weights64):
    engine = engine64
    with pytest.raises(OptionError, match="216x384"):
        engine.prepare_reference(torch.zeros(1, 3, 216, 384))
    with pytest.raises(ValueError, match=r"\(1, 80, 160\)"):
        engine.prepare_reference(torch.zeros(1, 80, 160))
    ref = engine.prepare_reference(batch(golden, "ref_lab_full"))
    with pytest.raises(ValueError, match="prepared at"):
        engine.correspond(torch.zeros(1, 1, 64, 64), ref)
    with pytest.raises(OptionError):
        DevcEngine(weights64, "cpu", torch.float16)


def assert_runs_in_bfloat16(golden, engine):
    """bfloat16 autocast really convolves in bfloat16, with bfloat16's accuracy.

    The seeded colorization net amplifies rounding through its instance norms (measured: its
    bfloat16 ab is off by ~60% of the golden's mean), so the accuracy is checked on VGG, whose
    error grows with the number of layers only; the engine's outputs must stay finite.
    """
    dtypes = {}
    hooks = [module.register_forward_hook(lambda _m, _i, out, net=name: dtypes.setdefault(net, set()).add(out.dtype))
             for name, net in (("vgg", engine.vgg), ("correspondence", engine.correspondence),
                               ("colorization", engine.colorization))
             for module in net.modules() if isinstance(module, torch.nn.Conv2d)]
    vgg_outputs = []  # the first VGG pass is the reference's (REFERENCE.md §3)
    hooks.append(engine.vgg.register_forward_hook(lambda _m, _i, out: vgg_outputs.append(out)))
    try:
        ref = engine.prepare_reference(batch(golden, "ref_lab_full").float())
        frame_l = batch(golden, "frame0_lab_full")[:, :1].float()
        corr = engine.correspond(frame_l, ref)
        ab, _ = engine.step(frame_l, corr, engine.initial_state(ref, propagate=False))
    finally:
        for hook in hooks:
            hook.remove()
    assert dtypes == {net: {torch.bfloat16} for net in ("vgg", "correspondence", "colorization")}
    assert ab.dtype == torch.float32 and torch.isfinite(ab).all() and torch.isfinite(corr.confidence).all()
    for feature, layer in zip(vgg_outputs[0], VGG_LAYERS):
        # Each convolution rounds its input, weights and output (3u), doubled for cancellation.
        bound = 6 * BF16_UNIT_ROUNDOFF * VGG_CONVS_BEFORE[layer]
        assert_rel(feature[0].float().cpu(), golden[f"ref_vgg_{layer}"], rel=bound)


def test_bfloat16_autocast_on_cpu(golden, weights64):
    engine = DevcEngine(cast(weights64, torch.float32), "cpu", torch.float32, autocast_dtype=torch.bfloat16)
    assert_runs_in_bfloat16(golden, engine)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_engine_on_cuda_matches_the_golden(golden, weights64):
    engine = DevcEngine(weights64, "cuda", torch.float64)
    _, outputs, _ = _engine_run(golden, engine)
    for i, ab in enumerate(outputs):
        assert_rel(ab[0].cpu(), golden[f"frame{i}_ab_pred_half"], rel=1e-7)
    engine = DevcEngine(cast(weights64, torch.float32), "cuda", torch.float32, autocast_dtype=torch.bfloat16)
    assert_runs_in_bfloat16(golden, engine)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fused_conv_ops_equal_the_plain_ops(memory_format):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(6, 8, 3, padding=2, dilation=2)
    x = torch.randn(2, 6, 12, 10).contiguous(memory_format=memory_format)
    other = torch.randn(2, 8, 12, 10)
    with torch.inference_mode():
        # The fused and plain kernels may sum the 6 x 3 x 3 products (and the bias) in another
        # order: the classic bound of a dot product of n terms, n * eps * sum |terms|.
        terms = 6 * 3 * 3 + 2
        magnitude = F.conv2d(x.abs(), conv.weight.abs(), conv.bias.abs(), padding=2, dilation=2)
        atol = terms * F32_EPS * float(magnitude.max() + other.abs().max())
        torch.testing.assert_close(conv_relu(conv, x), F.relu(conv(x)), rtol=0, atol=atol)
        torch.testing.assert_close(conv_relu(conv, x, 0.2), F.leaky_relu(conv(x), 0.2), rtol=0, atol=atol)
        torch.testing.assert_close(conv_add_relu(conv, x, other), F.relu(conv(x) + other), rtol=0, atol=atol)
        x64, conv64 = x.double(), conv.double()  # no oneDNN in float64: the eager path
        torch.testing.assert_close(conv_add_relu(conv64, x64, other.double()), F.relu(conv64(x64) + other.double()))


def test_max_pool_and_phase_interleave_helpers():
    x = torch.randn(2, 3, 9, 7)
    assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2))  # odd sizes floor like the pool
    phases = [torch.randn(1, 4, 3, 5) for _ in range(4)]
    expected = torch.zeros(1, 4, 6, 10)
    for (a, b), phase in zip(((0, 0), (0, 1), (1, 0), (1, 1)), phases):
        expected[..., a::2, b::2] = phase
    assert torch.equal(interleave_phases(phases), expected)
    channels_last = interleave_phases(phases, torch.channels_last)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last, expected)


def test_channels_last_decoder_stage_gives_the_same_colours(weights64):
    torch.manual_seed(2)
    with torch.device("meta"):
        net = build_colorization()
    net.load_state_dict(weights64["colornet"], assign=True)
    x = torch.randn(1, 7, 32, 48, dtype=torch.float64) * 20
    with torch.inference_mode():
        plain = net(x)
        net.dec10.channels_last = True
        torch.testing.assert_close(net(x), plain, rtol=0, atol=1e-10)
