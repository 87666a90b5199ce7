from __future__ import annotations

import pytest

from segbench.errors import UnknownNameError
from segbench.registry import Registry


def test_registry_register_get_and_errors():
    registry: Registry[int] = Registry("widget")
    registry.register("resnet34")(1)
    registry.register("mobilenet_v2")(2)
    assert registry.get("resnet34") == 1
    assert registry.names() == ["mobilenet_v2", "resnet34"]
    assert "resnet34" in registry and len(registry) == 2
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("resnet34")(3)
    with pytest.raises(UnknownNameError) as error:
        registry.get("resnet43")
    assert "did you mean 'resnet34'?" in str(error.value)
    assert "valid widgets: mobilenet_v2, resnet34" in str(error.value)
    with pytest.raises(UnknownNameError) as error:
        registry.get("zzz")
    assert "did you mean" not in str(error.value)
