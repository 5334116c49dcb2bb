"""The label-skewed scenario: every hospital lacks (or nearly lacks) a finding."""

import pytest

from edgetune.casestudy.hospitals import (
    label_skewed_hospitals,
    lacked_findings,
    make_hospitals,
)
from edgetune.casestudy.xray import CaseStudyDataError


def test_every_hospital_lacks_a_finding_and_the_seed_reproduces_them() -> None:
    seed, hospitals = label_skewed_hospitals(4, (40, 40, 30, 30), 0.3, seed=0, image_size=32)
    for hospital in hospitals:
        lacked = lacked_findings(hospital, at_most=2)
        assert lacked and all(hospital.class_counts()[f] <= 2 for f in lacked)
    again = make_hospitals(4, (40, 40, 30, 30), 0.3, seed, image_size=32)
    assert [h.class_counts() for h in again] == [h.class_counts() for h in hospitals]
    assert 0 <= seed < 100


def test_a_mix_too_even_to_lack_anything_is_refused() -> None:
    with pytest.raises(CaseStudyDataError, match="skews every hospital"):
        label_skewed_hospitals(2, (60, 60), 1000.0, seed=0, image_size=32, tries=3)
