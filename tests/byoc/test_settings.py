"""Settings: defaults, environment, flags over environment, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from byoc.settings import OPTIONS, Settings, SettingsError, load


def test_defaults_match_the_documented_ones(tmp_path: Path) -> None:
    settings = load({}, environ={"WORKSPACE": str(tmp_path)})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8889
    assert settings.capacity == 4
    assert settings.log_level == "INFO"
    assert settings.engine == "auto"
    assert settings.max_jobs == 32
    assert settings.infer_workers == 0  # auto
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.workspace == tmp_path.resolve()


def test_environment_is_read_and_flags_win(tmp_path: Path) -> None:
    env = {
        "PORT": "9000",
        "CAPABILITY_CAPACITY": "7",
        "LOG_LEVEL": "debug",
        "WORKSPACE": str(tmp_path),
    }
    assert load({}, environ=env).port == 9000
    assert load({}, environ=env).capacity == 7
    assert load({}, environ=env).log_level == "DEBUG"
    settings = load({"port": "9100", "capacity": "2"}, environ=env)
    assert (settings.port, settings.capacity) == (9100, 2)


def test_lists_and_the_singular_capability_name_alias() -> None:
    env = {"ORCH_URL": "https://a:8935, https://b:8935", "CAPABILITY_NAME": "text-reversal"}
    settings = load({}, environ=env)
    assert settings.orch_urls == ("https://a:8935", "https://b:8935")
    assert settings.capability_names == ("text-reversal",)
    both = {**env, "CAPABILITY_NAMES": "comfystream-image,text-reversal"}
    assert load({}, environ=both).capability_names == ("comfystream-image", "text-reversal")


def test_webrtc_settings_from_the_environment() -> None:
    settings = load(
        {},
        environ={
            "WEBRTC_HOST_ADDRESSES": "127.0.0.1, 10.0.0.2",
            "ICE_SERVERS": '[{"urls": "stun:s:3478"}, {"urls": ["turn:t"], "username": "u", "credential": "c"}]',
            "WEBRTC_PUBLIC_IP": "203.0.113.7",
            "WEBRTC_PORTS": "40000-40100",
            "WEBRTC_IDLE_TIMEOUT": "4.5",
            "WHEP_BITRATE": "800000",
            "WHEP_KEYFRAME_MIN_INTERVAL": "0.25",
            "TWILIO_ACCOUNT_SID": "AC1",
            "TWILIO_AUTH_TOKEN": "t",
        },
    )
    assert settings.webrtc_host_addresses == ("127.0.0.1", "10.0.0.2")
    assert settings.ice_servers == (
        {"urls": ["stun:s:3478"]},
        {"urls": ["turn:t"], "username": "u", "credential": "c"},
    )
    assert settings.webrtc_public_ip == "203.0.113.7"
    assert settings.webrtc_ports == (40000, 40100)
    assert settings.webrtc_idle_timeout_s == 4.5
    assert (settings.whep_bitrate, settings.whep_keyframe_min_interval_s) == (800_000, 0.25)
    assert (settings.twilio_account_sid, settings.twilio_auth_token) == ("AC1", "t")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": "70000"}, "--port must be 1-65535"),
        ({"port": "0"}, "--port must be 1-65535"),
        ({"port": "eighty"}, "--port: invalid value 'eighty'"),
        ({"capacity": "0"}, "--capacity must be at least 1"),
        ({"workspace": "/definitely/not/here"}, "does not exist"),
        ({"log_level": "chatty"}, "--log-level must be one of"),
        ({"engine": "tensorrt"}, "--engine must be one of"),
        ({"capability_names": "text-reversal,teleport"}, "unknown capability teleport"),
        ({"orch_urls": "ftp://orch"}, "must start with http:// or https://"),
        (
            {"heartbeat_timeout_s": "0.5", "heartbeat_interval_s": "1"},
            "--heartbeat-timeout must be longer",
        ),
        ({"events_interval_s": "-1"}, "--events-interval must be > 0"),
        ({"ring_slots": "1"}, "--ring-slots must be 2-64"),
        ({"ring_max_width": "8"}, "--ring-max-width must be 16-16384"),
        ({"x264_preset": "placebo"}, "--x264-preset must be one of"),
        ({"output_crf": "52"}, "--output-crf must be 0-51"),
        ({"output_bitrate": "-1"}, "--output-bitrate must be >= 0"),
        ({"segment_seconds": "0"}, "--segment-seconds must be > 0"),
        ({"webrtc_host_addresses": "10.0.0.1,nope"}, "not an IP address: 'nope'"),
        ({"webrtc_public_ip": "example.com"}, "not an IP address"),
        ({"webrtc_ports": "40000"}, "--webrtc-ports: invalid value"),
        ({"webrtc_ports": "40000-40000"}, "--webrtc-ports must be FIRST-LAST"),
        ({"webrtc_ports": "80-90"}, "--webrtc-ports must be FIRST-LAST"),
        ({"ice_servers": "{}"}, "--ice-servers: invalid value"),
        ({"ice_servers": '[{"urls": "http://x"}]'}, "--ice-servers: invalid value"),
        ({"webrtc_idle_timeout_s": "0"}, "--webrtc-idle-timeout must be > 0"),
        ({"whep_bitrate": "1000"}, "--whep-bitrate must be 100000-50000000"),
        ({"whep_keyframe_min_interval_s": "0"}, "--whep-keyframe-min-interval must be > 0"),
        ({"log_format": "xml"}, "--log-format must be one of text, json"),
        ({"metrics_port": "70000"}, "--metrics-port must be 0 or 1-65535"),
        ({"metrics_port": "8889"}, "--metrics-port must differ"),
        ({"metrics_host": "127.0.0.1"}, "--metrics-host needs --metrics-port"),
        ({"infer_workers": "0"}, "--infer-workers: invalid value"),
        ({"infer_workers": "65"}, "--infer-workers must be auto or 1-64"),
        ({"infer_workers": "many"}, "--infer-workers: invalid value"),
    ],
)
def test_bad_values_raise_one_clear_error(flags: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(flags, environ={})


def test_log_format_and_metrics_listener_from_the_environment() -> None:
    env = {"LOG_FORMAT": " JSON ", "METRICS_PORT": "9100", "METRICS_HOST": "127.0.0.1"}
    settings = load({}, environ=env)
    assert (settings.log_format, settings.metrics_port, settings.metrics_host) == (
        "json",
        9100,
        "127.0.0.1",
    )
    assert load({}, environ={}).log_format == "text"
    assert load({}, environ={}).metrics_port == 0


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="CAPABILITY_CAPACITY: invalid value"):
        load({}, environ={"CAPABILITY_CAPACITY": "many"})


def test_every_option_has_a_flag_env_and_a_settings_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    for option in OPTIONS:
        assert option.name in fields
        assert option.flag.startswith("--")
        assert option.env, option.name


def test_public_url_defaults_to_host_and_port_without_trailing_slash() -> None:
    assert load({"port": "9999"}, environ={}).public_url == "http://127.0.0.1:9999"
    settings = load({"capability_url": "https://runner.example:8889/"}, environ={})
    assert settings.public_url == "https://runner.example:8889"


def test_engine_comfyui_without_comfyui_installed_is_a_startup_error() -> None:
    import importlib.util

    if importlib.util.find_spec("comfy") is not None:
        assert load({"engine": "comfyui"}, environ={}).engine == "comfyui"
    else:
        with pytest.raises(SettingsError, match="ComfyUI is not installed"):
            load({"engine": "comfyui"}, environ={})


def test_trickle_verify_tls_is_off_by_default_and_set_by_flag_or_environment() -> None:
    assert load({}, environ={}).trickle_verify_tls is False
    assert load({}, environ={"TRICKLE_VERIFY_TLS": "1"}).trickle_verify_tls is True
    assert load({"trickle_verify_tls": "true"}, environ={}).trickle_verify_tls is True


def test_infer_workers_is_auto_or_a_count(tmp_path: Path) -> None:
    env = {"WORKSPACE": str(tmp_path)}
    assert load({"infer_workers": "auto"}, environ=env).infer_workers == 0
    assert load({}, environ={**env, "INFER_WORKERS": "3"}).infer_workers == 3
    assert load({"infer_workers": "2"}, environ={**env, "INFER_WORKERS": "3"}).infer_workers == 2


def test_control_planes_and_live_runner_settings(tmp_path: Path) -> None:
    env = {
        "WORKSPACE": str(tmp_path),
        "ORCH_URL": "https://orch:8935",
        "LIVE_RUNNER_ORCH_URL": "https://a:8935, https://b:8935",
        "ORCH_SECRET": "s",
        "LIVE_RUNNER_PRICE": "0.5",
        "LIVE_RUNNER_PRICE_UNIT": "720P",
        "LIVE_RUNNER_IDLE_TIMEOUT": "30",
    }
    settings = load({}, env)
    assert settings.byoc_enabled and settings.live_runner_enabled
    assert settings.live_runner_orch_urls == ("https://a:8935", "https://b:8935")
    assert settings.live_runner_first_secret == "s"  # ORCH_SECRET unless its own is set
    assert settings.live_runner_price_unit == "720p"
    assert settings.live_runner_idle_timeout_s == 30.0
    assert settings.live_runner_url_at(9000) == "http://127.0.0.1:9000/live-runner"
    only = load({"control_planes": "live-runner", "live_runner_secret": "t"}, env)
    assert not only.byoc_enabled and only.live_runner_enabled
    assert only.live_runner_first_secret == "t"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"control_planes": "byoc,grpc"}, "--control-planes"),
        ({"control_planes": ""}, "--control-planes"),
        ({"live_runner_price_unit": "minute"}, "--live-runner-price-unit"),
        ({"live_runner_price": "-1"}, "--live-runner-price must be >= 0"),
        ({"live_runner_idle_timeout_s": "0"}, "--live-runner-idle-timeout must be > 0"),
        ({"live_runner_orch_urls": "orch:8935", "orch_secret": "s"}, "must start with http"),
        (
            {"live_runner_orch_urls": "http://orch:8935"},
            "need --live-runner-secret or --orch-secret",
        ),
    ],
)
def test_bad_live_runner_settings(tmp_path: Path, flags: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(flags, {"WORKSPACE": str(tmp_path)})
