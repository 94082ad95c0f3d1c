from .connection import BUFSIZE as BUFSIZE
from .connection import CONNECTION_TIMEOUT as CONNECTION_TIMEOUT
from .connection import AuthenticationError as AuthenticationError
from .connection import BufferTooShort as BufferTooShort
from .connection import Client as Client
from .connection import TLS as TLS
from .connection import Connection as Connection
from .connection import Listener as Listener
from .connection import Pipe as Pipe
from .connection import RestrictedPickleError as RestrictedPickleError
from .connection import address_type as address_type
from .connection import answer_challenge as answer_challenge
from .connection import arbitrary_address as arbitrary_address
from .connection import default_family as default_family
from .connection import deliver_challenge as deliver_challenge
from .connection import families as families
from .connection import wait as wait

__version__: str
__all__: list[str]
