"""The launcher's settings (stack/settings.py): the product's values as given, plus the launcher's own from the environment."""

from __future__ import annotations

from core.settings import Settings
from stack.settings import StackSettings, for_launcher


def test_the_product_settings_ignore_the_launchers_variables(monkeypatch):
    monkeypatch.setenv("STACK_KAFKA_HEAP", "1g")
    assert not hasattr(Settings(_env_file=None), "stack_kafka_heap")


def test_for_launcher_keeps_the_products_values_and_adds_its_own(monkeypatch):
    monkeypatch.setenv("STACK_KAFKA_HEAP", "1g")
    monkeypatch.setenv("USERS_TOPIC", "from-the-environment")
    product = Settings(_env_file=None, users_topic="a-tests-own-topic", kafka_sasl_password="s3cret")
    launcher = for_launcher(product)
    assert isinstance(launcher, StackSettings)
    assert (launcher.users_topic, launcher.stack_kafka_heap) == ("a-tests-own-topic", "1g")
    assert launcher.kafka_sasl_password.get_secret_value() == "s3cret" and "s3cret" not in repr(launcher)
    assert for_launcher(launcher) is launcher
