"""The trivial size policy: messages over the configured maximum are refused.

Oversized messages never reach the daemon's memory (the frame reader drops
their bytes); this scanner turns the recorded size into a finding.
"""

from __future__ import annotations

from scanners.base import ScanContext
from scanners.result import Disposition, ScanResult, Verdict


class SizeScanner:
    name = "size"
    version = "1"

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        if ctx.size <= ctx.max_size:
            return []
        return [
            ScanResult(
                scanner=self.name,
                version=self.version,
                verdict=Verdict.POLICY,
                name="message-too-large",
                detail=f"{ctx.size} bytes > {ctx.max_size}",
                disposition=Disposition.REJECT,
                reply="Dmessage too large (#5.3.4)",
            )
        ]
