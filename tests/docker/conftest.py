def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: builds or runs a container image (opt-in, DISTQ_TEST_DOCKER=1)")
