"""Keyrings: where master keys live."""

from .aes import AesKeyring
from .base import Keyring
from .kms import KmsKeyring
from .multi import MultiKeyring
from .rsa import RsaKeyring

__all__ = ["AesKeyring", "Keyring", "KmsKeyring", "MultiKeyring", "RsaKeyring"]
