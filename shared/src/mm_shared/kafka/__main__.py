"""``python -m mm_shared.kafka BOOTSTRAP``: create the platform's topics (deployment step)."""

from mm_shared.kafka.topics import main

if __name__ == "__main__":
    main()
