"""Serving over the KServe v2 / Open Inference Protocol: model class, protocol codec, app factory, server."""
