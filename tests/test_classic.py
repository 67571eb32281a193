"""The classic engine: correspondence against a dense computation, the colorization step's
behaviour, and the engine on small clips (static shot, moving constant-colour square, a cut)."""

import numpy as np
import pytest
import torch

from vidcolor.engines.classic import colorize, correspondence, features
from vidcolor.engines.classic.engine import ClassicEngine, ClassicSettings, ClassicState
from vidcolor.color.lab import center_lab, lab_to_rgb, rgb_to_lab
from vidcolor.demo.clip import cut_index, make_truth_frames
from vidcolor.errors import OptionError
from vidcolor.eval.metrics import psnr


def _centred_lab(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float32 centred Lab, the engines' input convention."""
    return center_lab(rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255)
                      ).float()


def _to_rgb(l_centred: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    lab = torch.cat([l_centred + 50.0, ab], 1).double()
    return (lab_to_rgb(lab, clip=True)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _run_clip(engine, labs, ref_lab, propagate):
    """The recurrent loop as engine.py drives it: batched correspondence, sequential steps."""
    ref = engine.prepare_reference(ref_lab)
    state = engine.initial_state(ref, propagate)
    frames_l = torch.cat([lab[:, :1] for lab in labs])
    corr = engine.correspond(frames_l, ref)
    outputs = []
    for i in range(len(labs)):
        ab, state = engine.step(frames_l[i: i + 1], corr[i], state)
        outputs.append(ab)
    return outputs, corr


def _dense_match(frame_features, ref_features, ref_colors, temperature):
    """The paper's Eq. 3-5 written densely in float64 from the definitions."""
    def prepare(x):
        x = x - x.mean(dim=-1, keepdim=True)
        return x / (x.norm(dim=-2, keepdim=True) + 2.22e-16)

    f = prepare(frame_features.double())
    r = prepare(ref_features.double()[None])[0]
    similarity = torch.einsum("bcn,cm->bnm", f, r)
    confidence = similarity.max(dim=2).values
    if temperature is None:
        weights = torch.nn.functional.one_hot(similarity.argmax(dim=2), r.shape[1]).double()
    else:
        weights = torch.softmax(similarity / temperature, dim=2)
    return torch.einsum("bnm,km->bkn", weights, ref_colors.double()), confidence


@pytest.mark.parametrize("temperature", [None, 0.05])
def test_match_equals_the_dense_correlation_in_chunks(temperature):
    generator = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 6, 53, generator=generator, dtype=torch.float64) + 3.0
    ref = torch.randn(6, 41, generator=generator, dtype=torch.float64) - 1.0
    colors = torch.randn(2, 41, generator=generator, dtype=torch.float64) * 30
    warped, confidence = correspondence.match(
        correspondence.centre_and_normalize(frame),
        correspondence.centre_and_normalize(ref[None])[0], colors, temperature, chunk=7)
    expected_warp, expected_confidence = _dense_match(frame, ref, colors, temperature)
    assert warped.shape == (2, 2, 53) and confidence.shape == (2, 53)
    torch.testing.assert_close(confidence, expected_confidence, atol=1e-12, rtol=0)
    torch.testing.assert_close(warped, expected_warp, atol=1e-9, rtol=0)
    assert confidence.abs().max() <= 1.0 + 1e-12


def test_match_rejects_disagreeing_shapes():
    with pytest.raises(ValueError, match=r"\(2, 6, 5\)"):
        correspondence.match(torch.zeros(2, 6, 5), torch.zeros(5, 4), torch.zeros(2, 4))


def _normalized_field(generator, channels, height, width):
    x = torch.randn(1, channels, height * width, generator=generator, dtype=torch.float64)
    return correspondence.centre_and_normalize(x).view(channels, height, width)


def test_refine_matches_equals_a_brute_force_window_search():
    generator = torch.Generator().manual_seed(4)
    frame = _normalized_field(generator, 5, 9, 11)[None].repeat(2, 1, 1, 1)
    frame[1] = _normalized_field(generator, 5, 9, 11)
    ref = _normalized_field(generator, 5, 7, 13)
    offsets = torch.randint(-2, 3, (2, 2, 9, 11), generator=generator)
    best, similarity = correspondence.refine_matches(frame, ref, offsets, radius=1,
                                                     propagation_rounds=0)
    for b in range(2):
        for y in range(9):
            for x in range(11):
                candidates = []
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ry, rx = y + offsets[b, 0, y, x] + dy, x + offsets[b, 1, y, x] + dx
                        if 0 <= ry < 7 and 0 <= rx < 13:
                            candidates.append(float(frame[b, :, y, x] @ ref[:, ry, rx]))
                expected = max(candidates) if candidates else -float("inf")
                assert similarity[b, y, x].item() == pytest.approx(expected, abs=1e-12)
                if candidates:
                    ry, rx = y + best[b, 0, y, x], x + best[b, 1, y, x]
                    assert float(frame[b, :, y, x] @ ref[:, ry, rx]) == pytest.approx(expected)


def test_refine_matches_propagates_a_neighbours_better_offset():
    generator = torch.Generator().manual_seed(5)
    ref = _normalized_field(generator, 8, 10, 20)
    frame = ref[:, :, 5:15][None].clone()  # the frame is the reference shifted by 5 columns
    offsets = torch.zeros(1, 2, 10, 10, dtype=torch.long)
    offsets[:, 1] = 5
    offsets[0, :, 4, 4] = torch.tensor([3, -4])  # one wrong match, far outside the window
    best, similarity = correspondence.refine_matches(frame, ref, offsets, radius=0,
                                                     propagation_rounds=1)
    assert (best[:, 0] == 0).all() and (best[:, 1] == 5).all()
    torch.testing.assert_close(similarity, torch.ones_like(similarity))


def test_grid_size_follows_the_official_stride_and_caps_the_positions():
    assert features.grid_size(432, 768) == (54, 96)  # REFERENCE.md §4's feature grid
    assert features.grid_size(80, 160) == (10, 20)
    big_h, big_w = features.grid_size(2160, 3840)
    assert big_h * big_w <= features.MAX_GRID_POSITIONS * 1.01
    assert abs(big_w / big_h - 3840 / 2160) < 0.05


def test_correspondence_ignores_a_difference_of_exposure():
    """Gain and offset on the frame's luminance change nothing: no remapping is needed."""
    frames = make_truth_frames(2, (64, 96))
    ref_lab, frame_lab = _centred_lab(frames[0]), _centred_lab(frames[1])
    engine = ClassicEngine()
    ref = engine.prepare_reference(ref_lab)
    normal = engine.correspond(frame_lab[:, :1], ref)
    darker = engine.correspond((frame_lab[:, :1] + 50) * 0.6 + 5 - 50, ref)
    torch.testing.assert_close(darker.confidence, normal.confidence, atol=1e-4, rtol=0)
    torch.testing.assert_close(darker.warped_ab, normal.warped_ab, atol=1e-3, rtol=0)


def test_features_of_a_translated_image_are_translated():
    generator = torch.Generator().manual_seed(2)
    base = features.gaussian_blur(torch.rand(1, 1, 320, 320, generator=generator), 2.0)
    # A shift by (8, 16) working pixels is (1, 2) grid cells at stride 8.
    shifted = torch.roll(base, shifts=(8, 16), dims=(2, 3))
    a = features.raw_features(base, (40, 40))
    b = features.raw_features(shifted, (40, 40))
    m = 14  # the widest blur (sigma 8 analysis px, radius 24 = 12 cells) stays off the border
    torch.testing.assert_close(b[..., 1 + m: -m, 2 + m: -m], a[..., m: -m - 1, m: -m - 2],
                               atol=1e-5, rtol=0)


def test_self_reference_finds_itself():
    """The frame as its own reference: every position matches itself with cosine ~1, and the
    colours read along the matches are the frame's own, at full detail."""
    frame = make_truth_frames(1, (96, 128))[0]
    lab = _centred_lab(frame)
    engine = ClassicEngine(settings=ClassicSettings(detail_warp=True))
    ref = engine.prepare_reference(lab)
    corr = engine.correspond(lab[:, :1], ref)
    assert corr.warped_ab.shape == (1, 2, 96, 128)
    assert corr.confidence.shape == (1, 1, 96, 128)
    assert (corr.confidence > 0.999).float().mean() > 0.95
    error = (corr.warped_ab - lab[:, 1:]).norm(dim=1)
    assert (error < 1e-3).float().mean() > 0.95
    assert psnr(_to_rgb(lab[:, :1], corr.warped_ab), frame) > 40.0


def test_static_shot_with_the_frame_as_reference_reproduces_its_colours():
    frame = make_truth_frames(1, (96, 128))[0]
    lab = _centred_lab(frame)
    truth_rgb = _to_rgb(lab[:, :1], lab[:, 1:])
    # Propagation: the reference is the coloured frame 0 itself, carried along the shot.
    outputs, _ = _run_clip(ClassicEngine(), [lab] * 3, lab, propagate=True)
    for ab in outputs:
        assert ab.shape == (1, 2, 96, 128)
        assert psnr(_to_rgb(lab[:, :1], ab), truth_rgb) > 40.0
    # Exemplar: colours come through the stride-4 grid (mean colours by default, full detail
    # on request) and the edge-aware fill, so less exactly.
    for detail, floor in ((False, 28.0), (True, 35.0)):
        engine = ClassicEngine(settings=ClassicSettings(detail_warp=detail))
        outputs, _ = _run_clip(engine, [lab] * 3, lab, propagate=False)
        for ab in outputs:
            assert psnr(_to_rgb(lab[:, :1], ab), truth_rgb) > floor


def _square_clip(n_frames, size=(64, 96), side=20, step=3):
    """A constant-colour square moving right over a gray texture, and its true ab."""
    rng = np.random.default_rng(3)
    texture = rng.random((size[0] + 20, size[1] + 60))
    from scipy import ndimage

    texture = ndimage.gaussian_filter(texture, 2.0)
    texture = (texture - texture.min()) / np.ptp(texture) * 0.25 + 0.1  # dark gray texture
    frames = []
    for t in range(n_frames):
        rgb = np.repeat(texture[10: 10 + size[0], 10 + t: 10 + t + size[1], None], 3, axis=2)
        top, left = 22, 10 + step * t
        # A flat orange square, brighter than the background: grayscale flow can see it move.
        rgb[top: top + side, left: left + side] = (0.95, 0.6, 0.2)
        frames.append((rgb * 255 + 0.5).astype(np.uint8))
    return frames, (top, side, step)


def _plain_propagation(labs):
    """Plain flow propagation on the engine's flow: the previous ab warped by DIS each frame."""
    from vidcolor.motion.flow import dis_flow, warp

    plain = [labs[0][0, 1:].numpy()]
    for t in range(1, len(labs)):
        l_now = ((labs[t][0, 0] + 50) / 100).numpy()
        l_prev = ((labs[t - 1][0, 0] + 50) / 100).numpy()
        plain.append(warp(plain[-1], dis_flow(l_now, l_prev)))
    return [torch.from_numpy(ab)[None] for ab in plain]


def test_propagation_keeps_a_moving_constant_colour_region():
    frames, (top, side, step) = _square_clip(8)
    labs = [_centred_lab(f) for f in frames]
    engine = ClassicEngine()
    outputs, _ = _run_clip(engine, labs, labs[0], propagate=True)
    plain = _plain_propagation(labs)
    worst, plain_worst = [], []
    for t, ab in enumerate(outputs):
        left = 10 + step * t
        inner = (slice(None), slice(None), slice(top + 3, top + side - 3),
                 slice(left + 3, left + side - 3))
        error = (ab[inner] - labs[t][inner][:, 1:]).norm(dim=1)
        plain_error = (plain[t][inner] - labs[t][inner][:, 1:]).norm(dim=1)
        # The square's chroma is about 45 Lab units; it keeps it through 7 frames of motion.
        assert error.median() < 2.0, f"frame {t}"
        worst.append(float(error.max()))
        plain_worst.append(float(plain_error.max()))
        # The gray background stays gray: no orange bleeds out of the square.
        assert ab[:, :, top + side + 4:, :].norm(dim=1).max() < 3.0, f"frame {t}"
    # Flow inside a flat region is ill-posed, so plain propagation drags the background's
    # gray in from the leading edge (20-25 Lab units by frames 6-7, measured); colours whose
    # source luminance no longer matches are refilled from the square's own (measured
    # 10.5-11.3): less in all, and half as much by the end.
    assert sum(worst) < sum(plain_worst), (worst, plain_worst)
    assert worst[-1] < 0.6 * plain_worst[-1], (worst, plain_worst)


def test_engine_runs_through_a_hard_cut_and_drops_the_carried_colours():
    n_frames = 16
    frames = make_truth_frames(n_frames, (120, 160))
    labs = [_centred_lab(f) for f in frames]
    engine = ClassicEngine()
    outputs, corr = _run_clip(engine, labs, labs[0], propagate=True)
    assert len(outputs) == n_frames and len(corr) == n_frames
    for ab in outputs:
        assert ab.shape == (1, 2, 120, 160) and torch.isfinite(ab).all()
    cut = cut_index(n_frames)
    before = ((labs[cut - 1][0, 0] + 50) / 100).numpy()
    after = ((labs[cut][0, 0] + 50) / 100).numpy()
    zeros = np.zeros((2, 120, 160), np.float32)
    _, reliability = colorize.carry_previous(after, before, zeros, engine.settings.fusion)
    assert reliability.max() == 0.0
    within = ((labs[cut - 2][0, 0] + 50) / 100).numpy()
    _, reliability = colorize.carry_previous(before, within, zeros, engine.settings.fusion)
    assert reliability.mean() > 0.4


def _colours(ab, source_l, filled=0.0, weight=1.0):
    shape = source_l.shape
    return colorize.Colours(ab.astype(np.float32), source_l.astype(np.float32),
                            np.full(shape, filled, np.float32), np.full(shape, weight, np.float32))


def test_carry_chain_moves_colours_with_their_source_luminance():
    rng = np.random.default_rng(3)
    source_l = (rng.random((24, 32)) * 60 - 30).astype(np.float32)
    ab = rng.random((2, 24, 32)).astype(np.float32) * 40
    flow = np.zeros((2, 24, 32), np.float32)
    flow[1] = 2.0  # every pixel of the frame is 2 px to the right in the previous one
    consistent = np.ones((24, 32), bool)
    consistent[:, -2:] = False
    motion = colorize.Motion(flow, consistent, consistent.astype(np.float32))
    settings = colorize.FusionSettings(fill_occlusions=True)
    # The frame shows the same surface, moved: the colours still sit on their luminance.
    l_now = np.concatenate([source_l[:, 2:], source_l[:, -1:], source_l[:, -1:]], axis=1)
    carried = colorize.carry_chain(motion, l_now, _colours(ab, source_l, filled=0.5), settings)
    # An integer shift moves every channel exactly (the right border is clamped).
    np.testing.assert_allclose(carried.ab[:, :, :-2], ab[:, :, 2:], atol=1e-5)
    np.testing.assert_allclose(carried.source_l[:, :-2], source_l[:, 2:], atol=1e-5)
    np.testing.assert_allclose(carried.filled, 0.5, atol=1e-6)
    np.testing.assert_allclose(carried.weight, consistent, atol=1e-6)
    # Within a shot plain propagation's guess is kept where the check fails...
    keep = colorize.carry_chain(motion, l_now, _colours(ab, source_l),
                                colorize.FusionSettings(fill_occlusions=False))
    np.testing.assert_allclose(keep.weight, 1.0, atol=1e-6)
    # Colours that slid onto another surface (its luminance 30 units off) lose their weight.
    slid = colorize.carry_chain(motion, l_now + 30.0, _colours(ab, source_l), settings)
    assert slid.weight.max() < np.exp(-(0.3 / settings.drift_tolerance) ** 2) + 1e-6
    # ...but never across a cut (nothing passes the check).
    cut = colorize.Motion(flow, np.zeros((24, 32), bool), np.zeros((24, 32), np.float32))
    dropped = colorize.carry_chain(cut, l_now, _colours(ab, source_l),
                                   colorize.FusionSettings(fill_occlusions=False))
    assert dropped.weight.max() == 0.0


def _textured_frame(rng, size=(48, 64)):
    from scipy import ndimage

    return ndimage.gaussian_filter(rng.random(size), 1.5).astype(np.float32)


def test_read_keyframe_restores_what_the_chain_smeared_and_keeps_the_rest():
    """A static textured background (the keyframe) that the chain's colours slid off on the
    left half (an occluder dragged them): there the keyframe is read, elsewhere the chain."""
    rng = np.random.default_rng(5)
    texture = _textured_frame(rng)
    l_centred = (texture - texture.mean()) / np.ptp(texture) * 60.0
    key_lab = np.stack([l_centred, np.full_like(l_centred, 20.0), np.full_like(l_centred, -10.0)])
    chain_ab = np.stack([np.full_like(l_centred, 5.0), np.full_like(l_centred, 5.0)])
    chain_l = l_centred.copy()
    chain_l[:, :32] = l_centred[:, :32][::-1]  # another surface's luminance: slid off
    settings = colorize.FusionSettings()
    out = colorize.read_keyframe(l_centred, key_lab, _colours(chain_ab, chain_l), settings)
    inner_left, inner_right = (slice(4, -4), slice(4, 26)), (slice(4, -4), slice(40, -4))
    np.testing.assert_allclose(out.ab[0][inner_left], 20.0, atol=0.5)
    np.testing.assert_allclose(out.ab[1][inner_left], -10.0, atol=0.5)
    np.testing.assert_allclose(out.source_l[inner_left], l_centred[inner_left], atol=1.0)
    assert (out.filled[inner_left] == 0).all()
    # Where the chain still sits on its surface it wins ties: its colours stay.
    np.testing.assert_array_equal(out.ab[:, inner_right[0], inner_right[1]], 5.0)
    # A keyframe of another scene (flow inconsistent almost everywhere) is not read at all.
    other = np.stack([(_textured_frame(np.random.default_rng(9)) - 0.5) * 120.0,
                      key_lab[1], key_lab[2]])
    unchanged = colorize.read_keyframe(l_centred, other, _colours(chain_ab, chain_l), settings)
    np.testing.assert_array_equal(unchanged.ab, chain_ab)


def _stripes_clip(n_frames, size=(64, 96), step=0.5):
    """Fine colour stripes (4 px period) over a gray texture, moving 0.5 px per frame: every
    frame needs sub-pixel resampling, which blurs colours that are resampled again and again."""
    from scipy import ndimage

    rng = np.random.default_rng(8)
    height, width = size[0], size[1] + 40
    luminance = ndimage.gaussian_filter(rng.random((height, width)), 1.5)
    luminance = (luminance - luminance.min()) / np.ptp(luminance) * 0.5 + 0.3
    stripes = (np.arange(width) // 2) % 2  # 2 px red, 2 px green
    rgb = luminance[..., None] * np.where(stripes[None, :, None] == 1, (1.2, 0.8, 0.8),
                                          (0.8, 1.2, 0.8))
    frames = []
    for t in range(n_frames):
        moved = ndimage.shift(rgb, (0, -step * t, 0), order=1, mode="nearest")
        frames.append((np.clip(moved[:, :size[1]], 0, 1) * 255 + 0.5).astype(np.uint8))
    return frames


def test_propagation_reads_tracked_colours_from_the_reference_without_blurring():
    from vidcolor.motion.flow import dis_flow, warp

    frames = _stripes_clip(10)
    labs = [_centred_lab(f) for f in frames]
    outputs, _ = _run_clip(ClassicEngine(), labs, labs[0], propagate=True)
    # Plain flow propagation on the same flow: the previous ab warped again every frame.
    plain = labs[0][0, 1:].numpy()
    for t in range(1, len(frames)):
        l_now = ((labs[t][0, 0] + 50) / 100).numpy()
        l_prev = ((labs[t - 1][0, 0] + 50) / 100).numpy()
        plain = warp(plain, dis_flow(l_now, l_prev))
    inner = (slice(None), slice(8, -8), slice(8, -24))
    truth = labs[-1][0, 1:].numpy()
    ours_error = np.abs(outputs[-1][0].numpy() - truth)[inner].mean()
    plain_error = np.abs(plain - truth)[inner].mean()
    # Nine half-pixel warps of 2 px stripes wash plain propagation's chroma out; read once
    # from the reference along the same kind of flow, the stripes keep more of their contrast
    # (measured: 0.73 of plain propagation's error; flow error is left in both).
    assert ours_error < 0.8 * plain_error, (ours_error, plain_error)


def test_fuse_and_fill_keeps_reliable_carried_colours_and_fills_the_rest():
    settings = colorize.FusionSettings(unreliable_carry_weight=0.0)
    l_centred = np.zeros((30, 40), np.float32)
    l_centred[:, 20:] = 30.0  # an edge in the middle of the frame
    carried_ab = np.zeros((2, 30, 40), np.float32)
    carried_ab[0], carried_ab[1] = 12.0, -7.0
    carried_weight = np.zeros((30, 40), np.float32)
    carried_weight[:, :10] = 1.0  # reliable on the left quarter only
    carried = colorize.Colours(carried_ab, l_centred + 1.0, np.zeros_like(l_centred),
                               carried_weight)
    reference = np.zeros((2, 30, 40), np.float32)
    reference[0, :, 20:], reference[1, :, 20:] = -25.0, 40.0
    ref_weight = np.zeros((30, 40), np.float32)
    ref_weight[:, 30:] = 0.2  # confident on the right quarter only
    out, colours = colorize.fuse_and_fill(l_centred, reference, ref_weight, carried, settings)
    np.testing.assert_allclose(out[:, :, :10], carried_ab[:, :, :10], atol=1e-5)
    np.testing.assert_allclose(out[:, :, 10:20], carried_ab[:, :, 10:20], atol=0.05)  # filled
    np.testing.assert_allclose(out[:, :, 20:], reference[:, :, 20:], atol=0.05)  # up to edge
    # For the next frame: kept colours keep their source luminance, filled ones are new.
    np.testing.assert_array_equal(colours.ab, out)
    np.testing.assert_allclose(colours.source_l[:, :10], l_centred[:, :10] + 1.0, atol=1e-5)
    np.testing.assert_allclose(colours.source_l[:, 10:], l_centred[:, 10:], atol=1e-5)
    np.testing.assert_allclose(colours.filled[:, :10], 0.0, atol=1e-6)
    np.testing.assert_allclose(colours.filled[:, 10:], 1.0, atol=1e-6)
    # The flow's own guess where it is unreliable counts too, with a small weight: the right
    # quarter moves from the reference towards it, but the confident reference (weight 0.2
    # against 0.05) still dominates.
    default = colorize.FusionSettings(unreliable_carry_weight=0.05)
    out, _ = colorize.fuse_and_fill(l_centred, reference, ref_weight, carried, default)
    share = (out[0, :, 30:] - reference[0, 0, 30]) / (carried_ab[0, 0, 0] - reference[0, 0, 30])
    assert share.min() > 0.0 and share.max() < 0.5


def test_reference_weight_ramps_from_the_floor():
    settings = colorize.FusionSettings(confidence_floor=0.5, confidence_power=2.0,
                                       reference_weight=0.2)
    weights = colorize.reference_weight(np.array([-1.0, 0.5, 0.75, 1.0]), settings)
    np.testing.assert_allclose(weights, [0.0, 0.0, 0.05, 0.2])


def test_batched_correspondence_equals_one_frame_at_a_time():
    frames = make_truth_frames(3, (48, 64))
    labs = torch.cat([_centred_lab(f) for f in frames])
    engine = ClassicEngine()
    ref = engine.prepare_reference(labs[:1])
    batched = engine.correspond(labs[:, :1], ref)
    for i in range(3):
        single = engine.correspond(labs[i: i + 1, :1], ref)
        torch.testing.assert_close(batched[i].warped_ab, single.warped_ab, atol=1e-4, rtol=0)
        torch.testing.assert_close(batched[i].confidence, single.confidence, atol=1e-5, rtol=0)


def test_float64_engine_computes_in_float64():
    frames = [_centred_lab(f).double() for f in make_truth_frames(2, (32, 48))]
    # Without the keyframe's hard per-pixel choice, which rounding could flip between them.
    settings = ClassicSettings(fusion=colorize.FusionSettings(use_keyframe=False))
    single, _ = _run_clip(ClassicEngine(settings=settings), [f.float() for f in frames],
                          frames[0].float(), propagate=True)
    outputs, corr = _run_clip(ClassicEngine(dtype=torch.float64, settings=settings), frames,
                              frames[0], propagate=True)
    for ab in outputs:
        assert ab.dtype == torch.float64
    # Frame 0 of a propagation is the reference's own colours (float32 values here); frame 1
    # moved, so its colours were resampled and the correspondence computed in float64.
    for ab in outputs[1:] + [corr.confidence]:
        # Values a float32 computation cannot produce: the work itself was done in float64.
        assert (ab != ab.float().double()).any()
    # The same method in the same float32 flow: the two precisions agree to within the
    # float32 path's resampling, whose OpenCV remap quantises positions to 1/32 px (an error
    # of at most 1/32 of the step to a neighbour's ab), plus the smoother's float32 solve
    # (~1e-4 relative rounding on |ab| < 128).
    for low, high in zip(single, outputs):
        steps = torch.cat([(high[..., 1:, :] - high[..., :-1, :]).abs().flatten(),
                           (high[..., 1:] - high[..., :-1]).abs().flatten()])
        torch.testing.assert_close(high.float(), low, rtol=0,
                                   atol=float(steps.max()) / 32 + 0.1)


def test_sizes_and_input_checks():
    engine = ClassicEngine()
    assert engine.valid_working_size(10, 500) == (16, 500)
    assert engine.output_size(432, 768) == (432, 768)
    with pytest.raises(OptionError, match="8x200"):
        engine.check_working_size(8, 200)
    with pytest.raises(ValueError, match=r"\(1, 2, 32, 32\)"):
        engine.correspond(torch.zeros(1, 2, 32, 32), None)
    assert isinstance(engine.initial_state(None, propagate=False), ClassicState)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_engine_matches_cpu():
    frames = make_truth_frames(3, (48, 64))
    labs = [_centred_lab(f) for f in frames]
    cpu_out, _ = _run_clip(ClassicEngine(), labs, labs[0], propagate=True)
    gpu_out, _ = _run_clip(ClassicEngine(device="cuda"), [x.cuda() for x in labs],
                           labs[0].cuda(), propagate=True)
    for a, b in zip(cpu_out, gpu_out):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=0.5, rtol=0)
