"""Settings of the chat agent and its providers."""

import pytest
from pydantic import ValidationError

from server.settings import Settings


def test_openai_provider_needs_base_url_and_model():
    with pytest.raises(ValidationError, match="LLM_BASE_URL and LLM_MODEL"):
        Settings(_env_file=None, llm_provider="openai", llm_model="some-model")


def test_openai_provider_with_endpoint_is_valid():
    settings = Settings(_env_file=None, llm_provider="openai", llm_base_url="http://127.0.0.1:9/v1",
                        llm_model="some-model")
    assert settings.llm_provider == "openai"


@pytest.mark.parametrize("field, value", [("chat_max_steps", 0), ("chat_events_ttl_seconds", 1),
                                          ("chat_events_max_length", 10), ("llm_timeout_seconds", 0)])
def test_chat_limits_reject_out_of_range_values(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})
