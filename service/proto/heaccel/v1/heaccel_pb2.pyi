from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncryptMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCRYPT_MODE_TEXTBOOK: _ClassVar[EncryptMode]
    ENCRYPT_MODE_CRT: _ClassVar[EncryptMode]
    ENCRYPT_MODE_DJN: _ClassVar[EncryptMode]
    ENCRYPT_MODE_DETERMINISTIC: _ClassVar[EncryptMode]
ENCRYPT_MODE_TEXTBOOK: EncryptMode
ENCRYPT_MODE_CRT: EncryptMode
ENCRYPT_MODE_DJN: EncryptMode
ENCRYPT_MODE_DETERMINISTIC: EncryptMode

class KeyRef(_message.Message):
    __slots__ = ("key_id", "public_key")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key: bytes
    def __init__(self, key_id: _Optional[str] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("key_id", "bits", "public_key", "has_private_key", "private_key_owned_by_caller", "plaintext_width", "ciphertext_width", "djn_ready")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HAS_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_OWNED_BY_CALLER_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    DJN_READY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    bits: int
    public_key: bytes
    has_private_key: bool
    private_key_owned_by_caller: bool
    plaintext_width: int
    ciphertext_width: int
    djn_ready: bool
    def __init__(self, key_id: _Optional[str] = ..., bits: _Optional[int] = ..., public_key: _Optional[bytes] = ..., has_private_key: bool = ..., private_key_owned_by_caller: bool = ..., plaintext_width: _Optional[int] = ..., ciphertext_width: _Optional[int] = ..., djn_ready: bool = ...) -> None: ...

class RegisterPublicKeyRequest(_message.Message):
    __slots__ = ("public_key",)
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    def __init__(self, public_key: _Optional[bytes] = ...) -> None: ...

class GenerateKeyPairRequest(_message.Message):
    __slots__ = ("bits",)
    BITS_FIELD_NUMBER: _ClassVar[int]
    bits: int
    def __init__(self, bits: _Optional[int] = ...) -> None: ...

class ImportPrivateKeyRequest(_message.Message):
    __slots__ = ("public_key", "p", "q")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    p: bytes
    q: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., p: _Optional[bytes] = ..., q: _Optional[bytes] = ...) -> None: ...

class ExportPrivateKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class PrivateKeyMaterial(_message.Message):
    __slots__ = ("public_key", "p", "q")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    p: bytes
    q: bytes
    def __init__(self, public_key: _Optional[bytes] = ..., p: _Optional[bytes] = ..., q: _Optional[bytes] = ...) -> None: ...

class DeleteKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class DeleteKeyResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyInfo, _Mapping]]] = ...) -> None: ...

class SignedNumbers(_message.Message):
    __slots__ = ("magnitudes", "width", "negative")
    MAGNITUDES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    magnitudes: bytes
    width: int
    negative: bytes
    def __init__(self, magnitudes: _Optional[bytes] = ..., width: _Optional[int] = ..., negative: _Optional[bytes] = ...) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ("key", "plaintexts", "mode")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    plaintexts: bytes
    mode: EncryptMode
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., plaintexts: _Optional[bytes] = ..., mode: _Optional[_Union[EncryptMode, str]] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ("key", "ciphertexts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("key", "a", "b")
    KEY_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    a: bytes
    b: bytes
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., a: _Optional[bytes] = ..., b: _Optional[bytes] = ...) -> None: ...

class AddPlainRequest(_message.Message):
    __slots__ = ("key", "ciphertexts", "plaintexts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXTS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    plaintexts: bytes
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ..., plaintexts: _Optional[bytes] = ...) -> None: ...

class MulRequest(_message.Message):
    __slots__ = ("key", "ciphertexts", "scalars")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    SCALARS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    scalars: SignedNumbers
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ..., scalars: _Optional[_Union[SignedNumbers, _Mapping]] = ...) -> None: ...

class SumRequest(_message.Message):
    __slots__ = ("key", "ciphertexts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ...) -> None: ...

class SumGroupsRequest(_message.Message):
    __slots__ = ("key", "ciphertexts", "counts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class MatVecRequest(_message.Message):
    __slots__ = ("key", "ciphertexts", "matrix", "columns")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    matrix: SignedNumbers
    columns: int
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ..., matrix: _Optional[_Union[SignedNumbers, _Mapping]] = ..., columns: _Optional[int] = ...) -> None: ...

class RerandomizeRequest(_message.Message):
    __slots__ = ("key", "ciphertexts", "use_private_key")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    USE_PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    key: KeyRef
    ciphertexts: bytes
    use_private_key: bool
    def __init__(self, key: _Optional[_Union[KeyRef, _Mapping]] = ..., ciphertexts: _Optional[bytes] = ..., use_private_key: bool = ...) -> None: ...

class PowModRequest(_message.Message):
    __slots__ = ("modulus", "bases", "exponents")
    MODULUS_FIELD_NUMBER: _ClassVar[int]
    BASES_FIELD_NUMBER: _ClassVar[int]
    EXPONENTS_FIELD_NUMBER: _ClassVar[int]
    modulus: bytes
    bases: bytes
    exponents: SignedNumbers
    def __init__(self, modulus: _Optional[bytes] = ..., bases: _Optional[bytes] = ..., exponents: _Optional[_Union[SignedNumbers, _Mapping]] = ...) -> None: ...

class CiphertextBatch(_message.Message):
    __slots__ = ("ciphertexts",)
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    ciphertexts: bytes
    def __init__(self, ciphertexts: _Optional[bytes] = ...) -> None: ...

class PlaintextBatch(_message.Message):
    __slots__ = ("plaintexts",)
    PLAINTEXTS_FIELD_NUMBER: _ClassVar[int]
    plaintexts: bytes
    def __init__(self, plaintexts: _Optional[bytes] = ...) -> None: ...

class NumberBatch(_message.Message):
    __slots__ = ("numbers",)
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    numbers: bytes
    def __init__(self, numbers: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("sequence", "encrypt", "decrypt", "add", "add_plain", "mul", "sum", "matvec", "rerandomize", "powmod", "sum_groups")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPT_FIELD_NUMBER: _ClassVar[int]
    DECRYPT_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    ADD_PLAIN_FIELD_NUMBER: _ClassVar[int]
    MUL_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MATVEC_FIELD_NUMBER: _ClassVar[int]
    RERANDOMIZE_FIELD_NUMBER: _ClassVar[int]
    POWMOD_FIELD_NUMBER: _ClassVar[int]
    SUM_GROUPS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    encrypt: EncryptRequest
    decrypt: DecryptRequest
    add: AddRequest
    add_plain: AddPlainRequest
    mul: MulRequest
    sum: SumRequest
    matvec: MatVecRequest
    rerandomize: RerandomizeRequest
    powmod: PowModRequest
    sum_groups: SumGroupsRequest
    def __init__(self, sequence: _Optional[int] = ..., encrypt: _Optional[_Union[EncryptRequest, _Mapping]] = ..., decrypt: _Optional[_Union[DecryptRequest, _Mapping]] = ..., add: _Optional[_Union[AddRequest, _Mapping]] = ..., add_plain: _Optional[_Union[AddPlainRequest, _Mapping]] = ..., mul: _Optional[_Union[MulRequest, _Mapping]] = ..., sum: _Optional[_Union[SumRequest, _Mapping]] = ..., matvec: _Optional[_Union[MatVecRequest, _Mapping]] = ..., rerandomize: _Optional[_Union[RerandomizeRequest, _Mapping]] = ..., powmod: _Optional[_Union[PowModRequest, _Mapping]] = ..., sum_groups: _Optional[_Union[SumGroupsRequest, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("sequence", "data")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    data: bytes
    def __init__(self, sequence: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
