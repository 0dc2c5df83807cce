"""Realtime relay: committed writes fanned out to every server instance and live client."""
