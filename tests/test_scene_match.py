"""The keypoint scene match both engines rank references with (engines/scene_match.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edits import ShotSpec, render_shot
from vidcolor.color.lab import center_lab, rgb_to_lab
from vidcolor.engines import scene_match

SIZE = (120, 160)
SCENES = ("coffee", "astronaut", "rocket", "chelsea")


def _centred_lab(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> (1, 3, h, w) centred Lab, as the engines receive it."""
    return center_lab(rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255))


def _centred_l(rgb: np.ndarray) -> torch.Tensor:
    return _centred_lab(rgb)[:, :1]


@pytest.fixture(scope="module")
def scenes():
    """Per scene: a shot's first 4 frames (panning in) and a reference framed elsewhere."""
    out = {}
    for seed, scene in enumerate(SCENES):
        shot = render_shot(ShotSpec(scene, 12, ((0.45, 0.4), (0.55, 0.6)), (1.3, 1.6)), SIZE, seed)
        ref = render_shot(ShotSpec(scene, 1, ((0.6, 0.55), (0.6, 0.55)), (1.1, 1.1)), SIZE, seed)[0]
        out[scene] = (torch.cat([_centred_l(f) for f in shot[:4]]), ref)
    return out


def test_the_right_scene_ranks_first_and_others_fall_below_the_threshold(scenes):
    keys = {scene: scene_match.describe(_centred_l(ref)) for scene, (_, ref) in scenes.items()}
    for scene, (frames, _) in scenes.items():
        scores = {other: scene_match.scene_match(frames, keys[other]) for other in SCENES}
        assert max(scores, key=scores.get) == scene, scores
        assert scores[scene] >= scene_match.LOW_SCENE_MATCH, scores
        assert all(s < scene_match.LOW_SCENE_MATCH for o, s in scores.items() if o != scene), scores


def test_exposure_changes_keep_the_match(scenes):
    """A darker, flatter print of the shot (gain 0.5, offset -10 in L) matches its reference as
    well: the luminance is stretched before keypoints are found."""
    frames, ref = scenes["coffee"]
    keys = scene_match.describe(_centred_l(ref))
    darker = ((frames + 50.0) * 0.5 - 10.0).clamp(0, 100) - 50.0
    assert scene_match.scene_match(darker, keys) >= scene_match.LOW_SCENE_MATCH


def test_a_textureless_shot_is_decided_by_the_layout_only():
    """No keypoint on a smooth ramp: the score is the layout tie-breaker, at most its weight,
    and the ramp's own reference still wins over the reversed ramp."""
    ramp = torch.linspace(-40, 40, SIZE[1]).expand(1, 1, *SIZE).clone()
    same = scene_match.describe(ramp)
    reversed_ramp = scene_match.describe(ramp.flip(-1))
    score = scene_match.scene_match(ramp.expand(4, -1, -1, -1), same)
    assert 0 < score <= scene_match.LAYOUT_WEIGHT
    assert score > scene_match.scene_match(ramp.expand(4, -1, -1, -1), reversed_ramp)


def test_the_score_is_the_same_on_every_run(scenes):
    frames, ref = scenes["rocket"]
    keys = scene_match.describe(_centred_l(ref))
    assert scene_match.scene_match(frames, keys) == scene_match.scene_match(frames, keys)


def test_the_classic_engine_ranks_by_it(scenes):
    from vidcolor.engines.classic.engine import ClassicEngine

    engine = ClassicEngine()
    frames, ref = scenes["chelsea"]
    lab = _centred_lab(ref).float()
    prepared = engine.prepare_reference(lab)
    assert engine.reference_match(frames.float(), prepared) == \
        scene_match.scene_match(frames.float(), scene_match.describe(lab[:, :1]))


def test_a_shot_is_matched_past_its_fade_in(scenes):
    """After a fade through black the shot's first frames are black: the frames matched are
    the most contrasted of its look-ahead, so the right reference still scores as right."""
    from vidcolor.engines.classic.engine import ClassicEngine
    from vidcolor.io.frame import Frame
    from vidcolor.pipeline.presets import make_preset
    from vidcolor.pipeline.shots import _matching_l

    engine = ClassicEngine()
    preset = make_preset("default", engine, SIZE, None)
    shot = render_shot(ShotSpec("coffee", 12, ((0.45, 0.4), (0.55, 0.6)), (1.3, 1.6)), SIZE, 0)
    fading = [np.zeros_like(shot[0])] * 4 + [(f * (k / 4)).astype(np.uint8)
                                             for k, f in enumerate(shot[:4])] + shot[4:]
    frames_l = _matching_l(engine, preset, [Frame(i, f) for i, f in enumerate(fading)])
    keys = scene_match.describe(_centred_l(scenes["coffee"][1]))
    assert frames_l.shape[0] == 2
    assert scene_match.scene_match(frames_l, keys) >= scene_match.LOW_SCENE_MATCH
