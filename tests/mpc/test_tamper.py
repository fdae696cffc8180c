"""The tamper harness of the in-memory runner: one party alters one message at one step."""

import numpy as np
import pytest

from ipa.errors import ProtocolError
from ipa.mpc.channel import Peer
from ipa.mpc.memory import Sent, Tamper
from ipa.mpc.multiply import multiply
from ipa.mpc.reveal import reveal
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import opened, run

VALUES = np.array([3, 0, 2**64 - 1, 7], np.uint64)


def test_messages_lists_every_message_sent():
    result = run(reveal, share_arithmetic(VALUES))
    assert result.messages == [Sent(0, "root", 1), Sent(1, "root", 2), Sent(2, "root", 0)]
    assert str(result.messages[0]) == "H1 root -> H2"


@pytest.mark.parametrize("party", [0, 1, 2])
def test_add_one_changes_what_the_receiver_opens_by_one(party):
    result = run(reveal, share_arithmetic(VALUES), tamper=Tamper(party, "root", "add", index=2))
    receiver = (party + 1) % 3
    expected = VALUES + np.array([0, 0, 1, 0], np.uint64)  # wraps to 0
    assert np.array_equal(result.outputs[receiver], expected)  # the semi-honest reveal does not notice
    others = [o for p, o in enumerate(result.outputs) if p != receiver]
    assert all(np.array_equal(o, VALUES) for o in others)


@pytest.mark.parametrize("bit", [0, 5, 7])
def test_flip_changes_one_bit_of_one_word(bit):
    values = np.array([0b1010, 0, 255], np.uint64)
    result = run(reveal, share_boolean(values, 8), tamper=Tamper(1, "root", "flip", bit=bit))
    assert np.array_equal(result.outputs[2], values ^ np.array([1 << bit, 0, 0], np.uint8))
    assert np.array_equal(result.outputs[0], values)


def test_only_the_receivers_copy_is_altered():
    def send_and_keep(ctx, x):
        ctx.send(Peer.NEXT, x.left)
        (got,) = ctx.receive(Peer.PREV, x.left)
        return x.left.copy(), got

    x = share_arithmetic(VALUES)
    result = run(send_and_keep, x, tamper=Tamper(0, "root"))
    assert np.array_equal(result.outputs[0][0], x[0].left)  # the sender's array is intact
    assert np.array_equal(result.outputs[1][1] - x[0].left, np.array([1, 0, 0, 0], np.uint64))


def test_a_tampered_multiplication_gives_inconsistent_shares():
    x = share_arithmetic(VALUES)
    with pytest.raises(ProtocolError, match="differs between"):
        opened(run(multiply, x, x, tamper=Tamper(2, "root")))


def test_a_tamper_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="matched no non-empty message"):
        run(reveal, share_arithmetic(VALUES), tamper=Tamper(0, "root/elsewhere"))
    with pytest.raises(ValueError, match="matched no non-empty message"):
        run(reveal, share_arithmetic(np.zeros(0, np.uint64)), tamper=Tamper(0, "root"))
    with pytest.raises(ValueError, match="matched no non-empty message"):
        run(reveal, share_arithmetic(VALUES), tamper=Tamper(0, "root", to=2))  # H1 sends only to H2


def test_bad_tampers_are_refused():
    with pytest.raises(ValueError, match="party must be"):
        Tamper(3, "root")
    with pytest.raises(ValueError, match="kind must be"):
        Tamper(0, "root", "swap")
    with pytest.raises(ValueError, match="bit 64 is outside"):
        run(reveal, share_arithmetic(VALUES), tamper=Tamper(0, "root", "flip", bit=64))
    with pytest.raises(ValueError, match="index 4 is outside"):
        run(reveal, share_arithmetic(VALUES), tamper=Tamper(0, "root", index=4))
