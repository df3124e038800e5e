"""H.264 facts the WHEP answer and the shared encoder must agree on: the level a picture size
needs, the ``profile-level-id`` that names it, and reading both back from an SPS.

The shared stream is Constrained Baseline, which libx264 writes as ``profile_idc`` 66 with
``constraint_set0`` and ``constraint_set1`` set (``42c0..``); an SDP answer carries exactly those
three bytes (RFC 6184 §8.1), so a viewer is told what it will really get.
"""

from __future__ import annotations

from collections.abc import Iterator

PROFILE_IDC_BASELINE = 0x42
CONSTRAINED_BASELINE_FLAGS = 0xC0
"""constraint_set0 (conforms to Baseline) and constraint_set1 (conforms to Main), as x264
writes them for ``profile=baseline``: together they say Constrained Baseline."""

ASSUMED_MAX_FPS = 60
"""The frame rate a level is chosen for: the output follows the input's rate, which is not known
when a viewer is answered; 60 covers what WHIP publishers send. A higher level than needed only
widens what the viewer's decoder must accept."""

# (level_idc, x264's name, max macroblocks per frame, max macroblocks per second,
#  max Baseline bitrate in bit/s), H.264 Table A-1.
LEVELS: tuple[tuple[int, str, int, int, int], ...] = (
    (10, "1", 99, 1_485, 64_000),
    (11, "1.1", 396, 3_000, 192_000),
    (12, "1.2", 396, 6_000, 384_000),
    (13, "1.3", 396, 11_880, 768_000),
    (20, "2", 396, 11_880, 2_000_000),
    (21, "2.1", 792, 19_800, 4_000_000),
    (22, "2.2", 1_620, 20_250, 4_000_000),
    (30, "3", 1_620, 40_500, 10_000_000),
    (31, "3.1", 3_600, 108_000, 14_000_000),
    (32, "3.2", 5_120, 216_000, 20_000_000),
    (40, "4", 8_192, 245_760, 20_000_000),
    (41, "4.1", 8_192, 245_760, 50_000_000),
    (42, "4.2", 8_704, 522_240, 50_000_000),
    (50, "5", 22_080, 589_824, 135_000_000),
    (51, "5.1", 36_864, 983_040, 240_000_000),
    (52, "5.2", 36_864, 2_073_600, 240_000_000),
)


def level_for(width: int, height: int, *, fps: int = ASSUMED_MAX_FPS, bit_rate: int = 0) -> int:
    """The lowest ``level_idc`` whose limits hold ``width`` x ``height`` at ``fps`` and
    ``bit_rate``; the highest level when nothing smaller does."""
    macroblocks = ((width + 15) // 16) * ((height + 15) // 16)
    for level_idc, _name, max_fs, max_mbps, max_br in LEVELS:
        if macroblocks <= max_fs and macroblocks * fps <= max_mbps and bit_rate <= max_br:
            return level_idc
    return LEVELS[-1][0]


def x264_level(level_idc: int) -> str:
    """libx264's name of a level (``31`` -> ``"3.1"``)."""
    for idc, name, *_ in LEVELS:
        if idc == level_idc:
            return name
    raise ValueError(f"unknown H.264 level_idc {level_idc}")


def constrained_baseline_id(level_idc: int) -> str:
    """The ``profile-level-id`` of Constrained Baseline at ``level_idc`` as libx264 writes it."""
    return f"{PROFILE_IDC_BASELINE:02x}{CONSTRAINED_BASELINE_FLAGS:02x}{level_idc:02x}"


def nal_units(annexb: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B byte stream (start codes removed)."""
    starts = []
    i = annexb.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = annexb.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(annexb)
        if n + 1 < len(starts) and annexb[end - 1] == 0:
            end -= 1  # a four-byte start code
        yield annexb[start:end]


def nal_type(nal: bytes) -> int:
    """``nal_unit_type`` of a NAL unit (5: IDR slice, 7: SPS, 8: PPS)."""
    return nal[0] & 0x1F


def sps_profile_level_id(annexb: bytes) -> str | None:
    """``profile_idc``, the constraint flags and ``level_idc`` of the first SPS in ``annexb``
    as a ``profile-level-id`` (``"42c01f"``); None without an SPS."""
    for nal in nal_units(annexb):
        if nal_type(nal) == 7 and len(nal) >= 4:
            return nal[1:4].hex()
    return None
