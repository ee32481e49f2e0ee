"""Kafka's default partitioner (murmur2), vectorised over a batch of keys."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import murmur2

#: Below this many keys, key by key with aiokafka's own murmur2: numpy's cost per call (a few
#: dozen operations on tiny arrays) outweighs its speed per key, and at a steady rate the relay
#: publishes a key or two at a time.
VECTORISE_FROM = 16


def kafka_partitions(keys: Sequence[bytes], partitions: int) -> list[int]:
    """Kafka's default partition of each key (murmur2, as the Java client computes it), for a
    whole batch at once: aiokafka's pure-Python murmur2, key by key, showed in the relay's profile."""
    if len(keys) < VECTORISE_FROM:
        return [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]
    # Imported here: of the services only the relaying ones need it, not the notifier.
    import numpy as np

    m, seed = np.uint32(0x5BD1E995), 0x9747B28C
    result = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as in Java
        for length, indexes in by_length.items():
            data = np.frombuffer(b"".join(keys[i] for i in indexes), dtype=np.uint8)
            data = data.reshape(len(indexes), length)
            h = np.full(len(indexes), seed ^ length, dtype=np.uint32)
            whole = length // 4 * 4
            words = np.ascontiguousarray(data[:, :whole]).view("<u4")
            for column in range(words.shape[1]):
                k = words[:, column] * m
                k ^= k >> np.uint32(24)
                k *= m
                h *= m
                h ^= k
            tail = length - whole
            if tail:
                for shift in range(tail - 1, -1, -1):
                    h ^= data[:, whole + shift].astype(np.uint32) << np.uint32(8 * shift)
                h *= m
            h ^= h >> np.uint32(13)
            h *= m
            h ^= h >> np.uint32(15)
            chosen = (h & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)
            for i, partition in zip(indexes, chosen.tolist(), strict=True):
                result[i] = partition
    return result
