"""What the test files share: running the project's commands as a user does
(:mod:`tests.helpers.cli`). Fixtures shared across files live in ``tests/conftest.py``."""
