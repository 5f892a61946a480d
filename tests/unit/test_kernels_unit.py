"""How the library represents what differs between kernels (no kernel needed):
the EINVAL of a threshold above INT_MAX (6.12 and later) names the threshold;
the model refuses what every kernel refuses (negative weight, lower threshold
above the upper one) before any syscall."""
import errno

import pytest

from ipvs import Destination, Service
from ipvs.errors import InvalidRequestError, from_errno

SVC = Service(address="10.0.0.1", port=80)


@pytest.mark.parametrize("op", ["add_destination", "update_destination"])
@pytest.mark.parametrize("upper,lower,field", [(2**31, 0, "upper threshold 2147483648"),
                                               (2**32 - 1, 5, "upper threshold 4294967295")])
def test_threshold_above_int_max_names_the_threshold(op, upper, lower, field):
    dest = Destination("192.168.1.1", 80, upper_threshold=upper, lower_threshold=lower)
    e = from_errno(op, errno.EINVAL, _service=SVC, _dest=dest, target=str(dest))
    assert type(e) is InvalidRequestError and isinstance(e, ValueError)
    text = str(e)
    assert field in text and "2147483647" in text and "6.12" in text
    assert "unicast" not in text


def test_lower_threshold_alone_above_int_max():
    # only reachable through a raw object: the model keeps lower <= upper
    dest = Destination("192.168.1.1", 80, upper_threshold=2**31 - 1)
    object.__setattr__(dest, "lower_threshold", 2**31)
    text = str(from_errno("add_destination", errno.EINVAL, _service=SVC, _dest=dest))
    assert "lower threshold 2147483648 is above 2147483647" in text


def test_einval_within_int_max_keeps_the_unicast_hint():
    dest = Destination("224.0.0.1", 80, upper_threshold=2**31 - 1)
    text = str(from_errno("add_destination", errno.EINVAL, _service=SVC, _dest=dest))
    assert "unicast" in text and "threshold" not in text


def test_kernel_extended_ack_is_kept():
    dest = Destination("192.168.1.1", 80, upper_threshold=2**31)
    e = from_errno("add_destination", errno.EINVAL, kernel_message="integer out of range",
                   _service=SVC, _dest=dest)
    assert "integer out of range" in str(e) and "upper threshold" in str(e)


def test_model_refuses_what_every_kernel_refuses():
    with pytest.raises(ValueError, match=r"Destination\.weight must be in 0\.\.2147483647, got -1"):
        Destination("10.0.0.1", 80, weight=-1)
    with pytest.raises(ValueError, match=r"lower_threshold \(10\) must not be above "
                                         r"upper_threshold \(5\)"):
        Destination("10.0.0.1", 80, upper_threshold=5, lower_threshold=10)
    d = Destination("10.0.0.1", 80, upper_threshold=5, lower_threshold=5)
    with pytest.raises(ValueError, match="lower_threshold"):
        d.replace(lower_threshold=6)
    with pytest.raises(ValueError, match="weight"):
        d.replace(weight=-3)
    assert Destination("10.0.0.1", 80, weight=0, lower_threshold=0).weight == 0

