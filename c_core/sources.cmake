# The core's sources, layer by layer: the one list, included by
# c_core/CMakeLists.txt (the library, the CLI, the bindings) and by
# tests/fuzz/CMakeLists.txt (which compiles the pure layers again with
# coverage instrumentation).  A new source file is added here, to its layer.
#
#   shared     the status table, error reports, buffers handed to callers
#              (status.c; internal.h is the private header of every layer)
#   wire       the wire format, sans-I/O: framing and the authkey handshake
#              (wire.h holds the inline fast path the transport uses)
#   transport  addresses, system calls (io_posix.c is the only file with
#              socket system calls), connections, listeners, wait
#   values     the safe pickle subset, Python literal syntax (repr and
#              parse), and the glue sending values over a connection
#
# Lower layers never include a higher layer's header: wire knows only
# internal.h, transport knows wire through mpconn.h and wire/wire.h, values
# knows the transport only in conn_value.c.
set(MPCONN_SRC_DIR ${CMAKE_CURRENT_LIST_DIR}/src)

set(MPCONN_SHARED_SOURCES
  ${MPCONN_SRC_DIR}/status.c)

set(MPCONN_WIRE_SOURCES
  ${MPCONN_SRC_DIR}/wire/frame.c
  ${MPCONN_SRC_DIR}/wire/handshake.c)

set(MPCONN_TRANSPORT_SOURCES
  ${MPCONN_SRC_DIR}/transport/addr.c
  ${MPCONN_SRC_DIR}/transport/conn.c
  ${MPCONN_SRC_DIR}/transport/io_posix.c
  ${MPCONN_SRC_DIR}/transport/listener.c
  ${MPCONN_SRC_DIR}/transport/tls.c
  ${MPCONN_SRC_DIR}/transport/wait.c)

# The pure codec (no connection): what the fuzzers need.
set(MPCONN_CODEC_SOURCES
  ${MPCONN_SRC_DIR}/values/value.c
  ${MPCONN_SRC_DIR}/values/utf8.c
  ${MPCONN_SRC_DIR}/values/bigint.c
  ${MPCONN_SRC_DIR}/values/pickle_decode.c
  ${MPCONN_SRC_DIR}/values/pickle_encode.c
  ${MPCONN_SRC_DIR}/values/pyrepr.c
  ${MPCONN_SRC_DIR}/values/pyparse.c
  ${MPCONN_SRC_DIR}/values/unicode_printable.c)

set(MPCONN_VALUES_SOURCES
  ${MPCONN_CODEC_SOURCES}
  ${MPCONN_SRC_DIR}/values/conn_value.c)
