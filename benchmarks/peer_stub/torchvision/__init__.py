"""Minimal stand-in for torchvision, used only by the benchmarks' pyroVED venv.

pyroVED imports ``torchvision.utils.make_grid`` for its plots; the real torchvision does not
import beside torch 2.13.0 (CPU). Put ``benchmarks/peer_stub`` on ``sys.path`` only in the
benchmark scripts; it is never installed.
"""
