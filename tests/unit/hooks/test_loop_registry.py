"""One object per event loop and key, gone with its loop."""

from __future__ import annotations

import asyncio
import gc

from airflow_provider_claude_batch.hooks.loop_registry import LoopRegistry


class _Thing:
    pass


def test_one_object_per_loop_and_key_and_none_kept_after_the_loop() -> None:
    registry: LoopRegistry[_Thing] = LoopRegistry()
    made: list[_Thing] = []

    def factory() -> _Thing:
        made.append(_Thing())
        return made[-1]

    async def use() -> tuple[_Thing, _Thing, _Thing]:
        return registry.get("a", factory), registry.get("a", factory), registry.get("b", factory)

    first = asyncio.run(use())
    assert first[0] is first[1] and first[0] is not first[2] and len(made) == 2
    second = asyncio.run(use())
    assert second[0] is not first[0] and len(made) == 4  # another loop: its own objects
    gc.collect()
    assert len(registry._by_loop) == 0  # entries went with their loops
