"""Usage report: requests, tokens and cost per agent and per model for a period, from the usage API.

Works against the local stack or a deployed stack (anything serving GET /internal/llm/usage):

    python -m ops.usage_report --microdao dao-42 --from 2026-11-01 --to 2026-11-30 [--chart cost.png]
    python -m ops.usage_report --url https://abc.execute-api.eu-central-1.amazonaws.com --agent sofia

The secret comes from --secret or INTERNAL_SECRET (locally it defaults to dev-secret-token).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "avg_latency_ms")


def fetch(url: str, secret: str, params: dict[str, str]) -> dict[str, Any]:
    response = httpx.get(
        f"{url.rstrip('/')}/internal/llm/usage", params=params, headers={"X-Internal-Secret": secret}, timeout=30
    )
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError):
            message = response.text[:200]
        raise SystemExit(f"usage API answered {response.status_code}: {message}")
    return response.json()


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "cost_usd":
        return f"{value:.6f}"
    if column == "avg_latency_ms":
        return f"{value:.1f}"
    return str(value)


def table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    header = f"{title:<28}" + "".join(f"{c:>18}" for c in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, values in rows:
        cells = [f"{_cell(c, values.get(c)):>18}" for c in COLUMNS]
        lines.append(f"{name:<28}" + "".join(cells))
    return "\n".join(lines)


def chart(path: str, series: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = sorted({s["key"]["day"] for s in series})
    agents = sorted({s["key"]["agent"] for s in series})
    cost = {(s["key"]["agent"], s["key"]["day"]): s["cost_usd"] for s in series}
    fig, ax = plt.subplots(figsize=(max(6, len(days) * 0.6), 4))
    bottom = [0.0] * len(days)
    for agent in agents:
        values = [cost.get((agent, d), 0.0) for d in days]
        ax.bar(days, values, bottom=bottom, label=agent)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title(title)
    ax.set_ylabel("cost, USD")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    today = datetime.now(UTC).date()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LLM_PROXY_URL", "http://127.0.0.1:7007"))
    parser.add_argument("--secret", default=os.environ.get("INTERNAL_SECRET", "dev-secret-token"))
    parser.add_argument("--microdao")
    parser.add_argument("--agent")
    parser.add_argument("--from", dest="date_from", default=(today - timedelta(days=6)).isoformat())
    parser.add_argument("--to", dest="date_to", default=today.isoformat())
    parser.add_argument("--chart", help="write a PNG of daily cost per agent (needs --microdao or --agent)")
    args = parser.parse_args(argv)
    if args.agent and not args.microdao:
        raise SystemExit("--agent needs --microdao: an agent's usage is its usage in one microDAO")
    base = {"from": args.date_from, "to": args.date_to}
    if args.microdao:
        base["microdao_id"] = args.microdao
    if args.agent:
        base["agent_id"] = args.agent
    scope = ", ".join(f"{k}={v}" for k, v in base.items() if k.endswith("_id")) or "all agents"
    print(f"Usage {args.date_from} .. {args.date_to} ({scope}) from {args.url}\n")
    by_model = fetch(args.url, args.secret, {**base, "group_by": "model"})
    if "microdao_id" in base or "agent_id" in base:
        by_agent = fetch(args.url, args.secret, {**base, "group_by": "agent"})
        print(table("agent", [(s["key"]["agent"], s) for s in by_agent["series"]]))
        print()
    print(table("model / tool", [(s["key"]["model"], s) for s in by_model["series"]]))
    print()
    print(table("total", [("all", by_model["totals"])]))
    if args.chart:
        if not ("microdao_id" in base or "agent_id" in base):
            raise SystemExit("--chart needs --microdao or --agent")
        daily = fetch(args.url, args.secret, {**base, "group_by": "agent,day"})
        chart(args.chart, daily["series"], f"Daily LLM cost per agent ({scope})")
        print(f"\nchart written to {args.chart}")


if __name__ == "__main__":
    main(sys.argv[1:])
