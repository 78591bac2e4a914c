"""Both marks drawn where a video is first encoded, so it is encoded once.

    generate stage: RGB frames --yuv_from_rgb--> YuvVideo --MarkPlan.apply--> marked planes --encode_yuv--> MP4
                    details["marks"] = MarkPlan.record(request id)
    provenance stage: the generate decision recorded marks -> sign the stored file as it is (no decode, no
                      re-encode) and read the watermark back; no record -> decode, mark and encode there

Marking in the provenance stage meant decoding the generated video and encoding it a second time (about a
core-second a 5-second video, and a second generation of compression loss), and the frames the post-generation
checks saw were not the frames that were published. Marked at generation, the checks see the published pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pipeline.media.video_files import YuvVideo
from pipeline.provenance.watermarks import (MIN_INVISIBLE_PIXELS, InvisibleMarkStyle, VisibleMarkStyle,
                                            burn_visible_mark, embed_payload)


def watermark_id_for(request_id: str, bits: int) -> bytes:
    """Stable per request, so a redone signing embeds the same id."""
    return hashlib.sha256(f"trustreel-watermark:{request_id}".encode()).digest()[: bits // 8]


@dataclass(frozen=True)
class MarkPlan:
    """What the provenance policy asks to draw into a video's pixels, and under which policy version."""

    policy_id: str
    policy_version: str
    visible: VisibleMarkStyle
    invisible: InvisibleMarkStyle

    def payload_for(self, request_id: str) -> bytes:
        return watermark_id_for(request_id, self.invisible.payload_bits)

    @staticmethod
    def fits(video: YuvVideo) -> bool:
        """Frames too small for the invisible mark are left unmarked (the provenance stage refuses them)."""
        return video.height * video.width >= MIN_INVISIBLE_PIXELS

    def apply(self, video: YuvVideo, fps: int, request_id: str) -> dict[str, Any]:
        """Draw both marks on `video` in place; what to record in the decision's details["marks"]."""
        payload = self.payload_for(request_id)
        burn_visible_mark(video, self.visible, fps)
        embed_payload(video, payload, self.invisible)
        return {"policy_id": self.policy_id, "policy_version": self.policy_version, "watermark_id": payload.hex(),
                "invisible": vars(self.invisible)}


def invisible_style_of(marks: dict[str, Any], default: InvisibleMarkStyle) -> InvisibleMarkStyle:
    """The invisible mark's style as recorded with the marks (a policy may have changed since), else `default`."""
    recorded = marks.get("invisible")
    return InvisibleMarkStyle(**recorded) if isinstance(recorded, dict) else default
