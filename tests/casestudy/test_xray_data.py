"""The case study's data: radiographs show their findings' signs measurably, dialogues state
the finding and parse back, hospitals are non-IID with the requested label noise."""

import importlib.util

import numpy as np
import pytest
from PIL import Image

from edgetune.casestudy import xray as xray_module
from edgetune.casestudy.dialogues import (
    _NEXT_STEPS,
    _SIGNS,
    QUESTIONS,
    AnswerParts,
    answer_parts,
    diagnosis_of,
    make_dialogue,
)
from edgetune.casestudy.hospitals import balanced_test_set, make_hospitals
from edgetune.casestudy.pretrain import xray_caption_pairs
from edgetune.casestudy.xray import (
    FINDINGS,
    LATERAL_FINDINGS,
    CaseStudyDataError,
    generate,
    generate_set,
    load_real_xrays,
    preprocess,
    render,
    save_png,
)

SEEDS = range(10)


@pytest.fixture(scope="module")
def same_patient() -> dict[str, list[tuple]]:
    """For each finding, (normal, finding) renders of the same seeds: same patient, one change."""
    normals = [render("normal", s, 64) for s in SEEDS]
    return {
        f: [(n, render(f, s, 64)) for n, s in zip(normals, SEEDS, strict=True)] for f in FINDINGS
    }


def _extent(mask: np.ndarray) -> int:
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[-1] - cols[0] + 1)


def _side_lung(x) -> np.ndarray:
    return x.masks.right_lung if x.side == "right" else x.masks.left_lung


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


@pytest.mark.parametrize("size", [64, 128])
def test_images_are_float32_in_unit_range_with_the_requested_shape(size: int) -> None:
    for finding in FINDINGS:
        x = render(finding, 3, size)
        assert x.image.shape == (size, size) and x.image.dtype == np.float32
        assert x.image.min() >= 0.0 and x.image.max() <= 1.0
        assert x.image.std() > 0.1  # a picture, not a flat field
        assert x.masks.heart.shape == (size, size)
        assert (x.side is not None) == (finding in LATERAL_FINDINGS)


def test_same_seed_reproduces_the_image_and_another_seed_does_not() -> None:
    a, b, c = render("pneumonia", 11, 64), render("pneumonia", 11, 64), render("pneumonia", 12, 64)
    assert np.array_equal(a.image, b.image) and a.side == b.side
    assert not np.array_equal(a.image, c.image)
    drawn = generate("effusion", np.random.default_rng(5))
    again = generate("effusion", np.random.default_rng(5))
    assert np.array_equal(drawn.image, again.image)
    assert np.array_equal(render("effusion", drawn.seed, 64).image, drawn.image)


@pytest.mark.parametrize("size", [64, 128])
def test_ctr_from_the_heart_and_lung_masks_is_above_half_only_in_cardiomegaly(size: int) -> None:
    for finding in FINDINGS:
        for seed in range(8):
            x = render(finding, seed, size)
            lungs = x.masks.right_lung | x.masks.left_lung
            ctr = _extent(x.masks.heart) / _extent(lungs)
            assert ctr == pytest.approx(x.ctr)
            if finding == "cardiomegaly":
                assert 0.52 < ctr < 0.72
            else:
                assert 0.35 < ctr < 0.49
            assert x.image[x.masks.heart].mean() > x.image[lungs].mean() + 0.2  # heart is bright


def test_normal_and_cardiomegaly_have_no_lesion(same_patient) -> None:
    for finding in ("normal", "cardiomegaly"):
        assert not any(x.masks.lesion.any() for _, x in same_patient[finding])


@pytest.mark.parametrize("finding", ["pneumonia", "effusion"])
def test_opacities_brighten_part_of_one_lung(same_patient, finding: str) -> None:
    for normal, x in same_patient[finding]:
        lesion, lung = x.masks.lesion, _side_lung(x)
        assert lesion.sum() >= 10 and not (lesion & ~lung).any()
        assert lesion.sum() < 0.8 * lung.sum()
        assert x.image[lesion].mean() > normal.image[lesion].mean() + 0.1


def test_effusion_fills_the_base_under_a_meniscus_rising_laterally(same_patient) -> None:
    for _, x in same_patient["effusion"]:
        lesion, lung = x.masks.lesion, _side_lung(x)
        rows, cols = np.nonzero(lesion)
        lung_rows = np.nonzero(lung)[0]
        assert rows.mean() > lung_rows.mean() + 0.25 * np.ptp(lung_rows)  # basal
        assert rows.max() >= lung_rows.max() - 1  # reaches the costophrenic angle
        lateral_is_low_col = x.side == "right"  # PA film: patient's right on the image left
        third = np.ptp(cols) / 3
        lateral = cols <= cols.min() + third if lateral_is_low_col else cols >= cols.max() - third
        medial = cols >= cols.max() - third if lateral_is_low_col else cols <= cols.min() + third
        assert rows[lateral].min() < rows[medial].min()  # the upper border climbs the wall


def test_pneumothorax_is_a_dark_peripheral_space_without_markings_behind_a_pleural_line(
    same_patient,
) -> None:
    for normal, x in same_patient["pneumothorax"]:
        space, lung = x.masks.lesion, _side_lung(x)
        assert space.sum() >= 20 and not (space & ~lung).any()
        assert x.image[space].mean() < normal.image[space].mean() - 0.05
        # peripheral: the space reaches the lung's lateral edge
        cols = np.flatnonzero(lung.any(axis=0))
        edge = cols[0] if x.side == "right" else cols[-1]
        assert space[:, edge].any()
        # the pleural line: the lung rim bordering the space is brighter than it was
        rim = _dilate(space) & ~space & lung
        assert x.image[rim].mean() > normal.image[rim].mean()


def test_pneumothorax_space_shows_none_of_the_patients_vessel_markings() -> None:
    """Vessel pixels stand out from their neighbours in the normal film, not in the space.

    Measured at 128 px and averaged over patients: peripheral vessels are too thin to resolve
    reliably at 64 px, where the darker band and the pleural line carry the sign."""

    def contrast(x, space, vessels) -> float:
        return float(x.image[space & vessels].mean() - x.image[space & ~vessels].mean())

    normal, collapsed = [], []
    for seed in range(6):
        x, n = render("pneumothorax", seed, 128), render("normal", seed, 128)
        space, vessels = x.masks.lesion, x.masks.vessels
        assert (space & vessels).sum() >= 20
        normal.append(contrast(n, space, vessels))
        collapsed.append(contrast(x, space, vessels))
    assert np.mean(normal) > 0.02
    assert np.mean(collapsed) < 0.4 * np.mean(normal)


def test_generate_set_follows_class_weights_and_is_deterministic() -> None:
    only = generate_set(12, seed=4, class_weights=(0, 1, 0, 0, 1))
    assert {x.finding for x in only} == {"pneumonia", "pneumothorax"}
    again = generate_set(12, seed=4, class_weights=(0, 1, 0, 0, 1))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(only, again, strict=True))
    subset = generate_set(5, seed=1, findings=("cardiomegaly",))
    assert all(x.finding == "cardiomegaly" and x.ctr > 0.5 for x in subset)


def test_bad_requests_raise_one_line_errors() -> None:
    with pytest.raises(CaseStudyDataError, match="unknown finding 'fracture'"):
        render("fracture", 0)
    with pytest.raises(CaseStudyDataError, match="size 63"):
        render("normal", 0, 63)
    with pytest.raises(CaseStudyDataError, match="class_weights"):
        generate_set(3, 0, class_weights=(1, 1))
    with pytest.raises(CaseStudyDataError, match="needs a side"):
        make_dialogue("pneumonia", np.random.default_rng(0))


def test_save_png_writes_the_image_in_8_bits(tmp_path) -> None:
    x = render("effusion", 2, 64)
    save_png(x, tmp_path / "x.png")
    back = np.asarray(Image.open(tmp_path / "x.png"), dtype=np.float32) / 255
    assert back.shape == (64, 64) and np.abs(back - x.image).max() <= 0.5 / 255 + 1e-6


def test_preprocess_turns_any_photo_into_the_generator_format() -> None:
    photo = np.zeros((90, 120, 3), dtype=np.uint8)
    photo[:, 60:] = 255  # right half white; the centre crop keeps columns 15..104
    out = preprocess(photo, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert out[:, :20].max() == 0.0 and out[:, -20:].min() == 1.0


def test_real_xrays_error_names_the_missing_package(monkeypatch) -> None:
    monkeypatch.setattr(xray_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CaseStudyDataError, match="pneumonia-model-package"):
        load_real_xrays(64)


@pytest.mark.skipif(
    importlib.util.find_spec("pneumonia_model_package") is None,
    reason="optional pneumonia-model-package is not installed",
)
def test_real_xrays_load_through_the_same_preprocessing() -> None:
    images = load_real_xrays(64)
    assert len(images) >= 10
    for image in images:
        assert image.shape == (64, 64) and image.dtype == np.float32
        assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05


def test_every_phrasing_states_its_diagnosis_first_and_parses_back() -> None:
    rng = np.random.default_rng(0)
    for finding in FINDINGS:
        side = "left" if finding in LATERAL_FINDINGS else None
        for sign in _SIGNS[finding]:
            for step in _NEXT_STEPS[finding]:
                text = f"{sign.format(side=side, ctr=' (cardiothoracic ratio 0.61)')} {step}"
                assert diagnosis_of(text) == finding, text  # even without the prefix
        for _ in range(30):
            d = make_dialogue(finding, rng, side=side, ctr=0.44)
            assert d.answer.startswith("Diagnosis:") and d.question in QUESTIONS
            assert diagnosis_of(d.answer) == finding == d.finding
    answer = make_dialogue("cardiomegaly", rng, ctr=0.613).answer
    assert "0.61" in answer
    assert "right" in make_dialogue("pneumothorax", rng, side="right").answer


def test_diagnosis_of_ignores_unrelated_text_and_prefers_the_diagnosis_clause() -> None:
    assert diagnosis_of("The weather is lovely today.") is None
    assert diagnosis_of("Diagnosis: unclear. Please repeat the image.") is None
    assert diagnosis_of("") is None
    assert (
        diagnosis_of("Diagnosis: pneumothorax. Earlier films showed pneumonia.") == "pneumothorax"
    )
    assert diagnosis_of("I think this is a pleural effusion on the left") == "effusion"


def test_every_reference_dialogue_is_complete_and_a_bare_label_is_not() -> None:
    rng = np.random.default_rng(3)
    for finding in FINDINGS:
        for side in ("left", "right") if finding in LATERAL_FINDINGS else (None,):
            for ctr in (None, 0.48, 0.613):
                answer = make_dialogue(finding, rng, side=side, ctr=ctr).answer
                assert answer_parts(answer) == AnswerParts(finding, True, True), answer
    assert answer_parts("Diagnosis: pneumonia.") == AnswerParts("pneumonia", False, False)
    assert not answer_parts("The weather is lovely today.").complete


def test_an_answer_whose_sign_or_step_belongs_to_another_diagnosis_is_not_complete() -> None:
    rng = np.random.default_rng(4)
    pneumonia = make_dialogue("pneumonia", rng, side="left").answer
    effusion_step = _NEXT_STEPS["effusion"][0]
    sign = pneumonia.split(". ", 1)[1].rsplit(". ", 1)[0] + "."  # the pneumonia sign alone
    mixed = f"Diagnosis: pneumonia. {sign} {effusion_step}"
    assert answer_parts(mixed) == AnswerParts("pneumonia", True, False)
    wrong_sign = f"Diagnosis: cardiomegaly. {sign} {_NEXT_STEPS['cardiomegaly'][0]}"
    assert answer_parts(wrong_sign) == AnswerParts("cardiomegaly", False, True)


def test_dialogues_vary_with_the_seed_and_repeat_with_it() -> None:
    draw = [make_dialogue("normal", np.random.default_rng(s)) for s in range(20)]
    assert len({d.question for d in draw}) > 3 and len({d.answer for d in draw}) > 3
    assert make_dialogue("normal", np.random.default_rng(1)) == draw[1]


@pytest.fixture(scope="module")
def hospitals():
    return make_hospitals(4, [20, 50, 35, 60], alpha=0.3, seed=8, noisy_hospital=3, noise_rate=0.4)


def test_hospitals_have_their_sizes_and_distinct_dirichlet_mixes(hospitals) -> None:
    assert [len(h.samples) for h in hospitals] == [20, 50, 35, 60]
    mixes = np.array([h.spec.class_mix for h in hospitals])
    assert np.allclose(mixes.sum(axis=1), 1)
    assert min(np.abs(a - b).sum() for i, a in enumerate(mixes) for b in mixes[i + 1 :]) > 0.3
    for i, h in enumerate(hospitals):  # each hospital's data follows its own mix best
        counts = np.array(list(h.class_counts().values())) / len(h.samples)
        distances = np.abs(mixes - counts).sum(axis=1)
        assert int(np.argmin(distances)) == i


def test_small_alpha_concentrates_each_hospital_on_fewer_findings() -> None:
    def top_share(alpha: float) -> float:
        hs = make_hospitals(6, [1] * 6, alpha=alpha, seed=2)
        return float(np.mean([max(h.spec.class_mix) for h in hs]))

    assert top_share(0.1) > top_share(100.0) + 0.3


def test_only_the_noisy_hospital_mislabels_at_about_the_requested_rate(hospitals) -> None:
    assert [h.label_noise() for h in hospitals[:3]] == [0.0, 0.0, 0.0]
    noisy = hospitals[3]
    assert noisy.spec.noise_rate == 0.4 and 0.2 <= noisy.label_noise() <= 0.6  # binomial n=60
    for s in noisy.samples:
        assert diagnosis_of(s.dialogue.answer) == s.labelled_finding
        assert s.true_finding == s.xray.finding


def test_noise_rate_is_measured_close_to_the_request_on_many_samples() -> None:
    from edgetune.casestudy.hospitals import _pair

    xrays = generate_set(20, seed=3)
    samples = _pair(xrays * 25, np.random.default_rng(0), 0.3)  # 500 labels
    wrong = np.mean([s.true_finding != s.labelled_finding for s in samples])
    assert abs(wrong - 0.3) < 0.06


def test_hospitals_and_test_set_are_deterministic() -> None:
    a = make_hospitals(2, [6, 4], alpha=1.0, seed=5, noisy_hospital=0, noise_rate=0.5)
    b = make_hospitals(2, [6, 4], alpha=1.0, seed=5, noisy_hospital=0, noise_rate=0.5)
    for ha, hb in zip(a, b, strict=True):
        assert ha.spec == hb.spec
        assert [s.dialogue for s in ha.samples] == [s.dialogue for s in hb.samples]
        assert all(
            np.array_equal(x.xray.image, y.xray.image)
            for x, y in zip(ha.samples, hb.samples, strict=True)
        )
    test = balanced_test_set(2, seed=1)
    assert [s.true_finding for s in test] == [f for f in FINDINGS for _ in range(2)]
    assert all(s.true_finding == s.labelled_finding for s in test)


def test_xray_captions_describe_signs_without_naming_a_diagnosis() -> None:
    pairs = xray_caption_pairs(40, seed=0)
    captions = [c for _, c in pairs]
    assert any("wide heart" in c for c in captions) and any("clear lungs" in c for c in captions)
    assert any("dark area" in c for c in captions) and any("bright area" in c for c in captions)
    names = ("pneumonia", "effusion", "cardiomegaly", "pneumothorax", "normal")
    assert not any(n in c for c in captions for n in names)
