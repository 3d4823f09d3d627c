"""How fast planfix_gateway answers Planfix's scenario requests.

    .venv/bin/python -m bench.webhook_latency [requests]

Planfix sends an account's scenario requests one at a time and waits for each answer, so the
figure that matters is the latency of one request, sent one after another like Planfix does.
Prints the median, 95th percentile and maximum.
"""

from __future__ import annotations

import statistics
import sys
import time

import httpx

from bench.common import running_stack


def main(requests: int = 500) -> None:
    with running_stack(("planfix_gateway",), planfix_rate_per_s=None) as stack:
        task = stack.planfix.add_task("Latency")
        latencies: list[float] = []
        with httpx.Client(timeout=10) as client:
            for index in range(requests + 20):
                body = f'{{"event":"comment.added","task":"{task}","comment":"{900000 + index}"}}'
                started = time.perf_counter()
                response = client.post(stack.webhook_url, content=body.encode())
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if index >= 20:  # the first ones warm up connections
                    latencies.append(elapsed * 1000)
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"webhook answer over {requests} sequential requests: median {statistics.median(latencies):.1f} ms, "
        f"p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
