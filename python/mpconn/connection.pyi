import os
import pickle
import socket
import sys
import types
from multiprocessing import AuthenticationError as AuthenticationError
from multiprocessing import BufferTooShort as BufferTooShort
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar, Union

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _Buffer
else:
    _Buffer = Any

_Address = Union[str, bytes, Tuple[str, int], Tuple[str, int, int, int]]
_Dialect = str  # 'modern' | 'legacy' | 'strict'
_T = TypeVar("_T")

__all__ = ["Client", "Listener", "Pipe", "wait", "RestrictedPickleError"]

families: List[str]
default_family: str
BUFSIZE: int
CONNECTION_TIMEOUT: float

class RestrictedPickleError(pickle.UnpicklingError): ...

class Connection:
    def __init__(self, handle: int, readable: bool = ..., writable: bool = ...) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def readable(self) -> bool: ...
    @property
    def writable(self) -> bool: ...
    restricted: bool
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def send_bytes(self, buf: _Buffer, offset: int = ..., size: Optional[int] = ...) -> None: ...
    def send_bytes_many(self, buffers: Sequence[_Buffer]) -> None: ...
    def send(self, obj: Any) -> None: ...
    def recv_bytes(self, maxlength: Optional[int] = ...) -> bytes: ...
    def recv_bytes_into(self, buf: Any, offset: int = ...) -> int: ...
    def recv(self, *, restricted: Optional[bool] = ...) -> Any: ...
    def poll(self, timeout: Optional[float] = ...) -> bool: ...
    def __enter__(self: _T) -> _T: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        exc_tb: Optional[types.TracebackType],
    ) -> None: ...

class TLS:
    certfile: Optional[Union[str, bytes, os.PathLike]]
    keyfile: Optional[Union[str, bytes, os.PathLike]]
    cafile: Optional[Union[str, bytes, os.PathLike]]
    capath: Optional[Union[str, bytes, os.PathLike]]
    server_hostname: Optional[str]
    verify: bool
    def __init__(
        self,
        certfile: Optional[Union[str, bytes, os.PathLike]] = ...,
        keyfile: Optional[Union[str, bytes, os.PathLike]] = ...,
        cafile: Optional[Union[str, bytes, os.PathLike]] = ...,
        capath: Optional[Union[str, bytes, os.PathLike]] = ...,
        server_hostname: Optional[str] = ...,
        verify: bool = ...,
    ) -> None: ...

class Listener:
    def __init__(
        self,
        address: Optional[_Address] = ...,
        family: Optional[str] = ...,
        backlog: int = ...,
        authkey: Optional[bytes] = ...,
        *,
        dialect: _Dialect = ...,
        digest: Optional[str] = ...,
        handshake_timeout: Optional[float] = ...,
        read_ahead: bool = ...,
        restricted: bool = ...,
        tls: Optional[TLS] = ...,
    ) -> None: ...
    def accept(self, *, timeout: Optional[float] = ...) -> Connection: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...
    @property
    def address(self) -> _Address: ...
    @property
    def last_accepted(self) -> Optional[_Address]: ...
    def __enter__(self: _T) -> _T: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        exc_tb: Optional[types.TracebackType],
    ) -> None: ...

def Client(
    address: _Address,
    family: Optional[str] = ...,
    authkey: Optional[bytes] = ...,
    *,
    timeout: Optional[float] = ...,
    dialect: _Dialect = ...,
    digest: Optional[str] = ...,
    read_ahead: bool = ...,
    restricted: bool = ...,
    tls: Optional[TLS] = ...,
) -> Connection: ...
def Pipe(duplex: bool = ..., *, read_ahead: bool = ...) -> Tuple[Connection, Connection]: ...
def wait(
    object_list: Iterable[Union[Connection, socket.socket, int, Any]], timeout: Optional[float] = ...
) -> List[Any]: ...
def address_type(address: _Address) -> str: ...
def arbitrary_address(family: str) -> _Address: ...
def deliver_challenge(
    connection: Any, authkey: bytes, digest_name: str = ..., *, dialect: _Dialect = ...
) -> None: ...
def answer_challenge(connection: Any, authkey: bytes, *, dialect: _Dialect = ...) -> None: ...
