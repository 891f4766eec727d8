"""Helpers the tests share: models with known outputs, waits, namespaces, tools."""
