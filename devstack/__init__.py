"""The local stack without Docker: broker, database, mail catcher and the three services as
plain processes. Used by ``make up``/``make down`` and by the test suite's fixtures."""
