# `cmake --install`: the programs, the client libraries with their public and generated headers,
# a CMake package (pinbrokerConfig.cmake: pinbroker::client, pinbroker::rdma_client) and
# pkg-config modules (pinbroker-client, pinbroker-rdma-client). Included last by the top-level
# CMakeLists.txt, once every target exists.
#
# The libraries are installed as static archives compiled position-independent, so that a
# consumer can link them into a program or into its own shared object, and no soname or ABI
# has to be kept stable across releases. The internal libraries the client libraries are built
# from (api, api_proto, common, rdma_wire, verbs) are installed and exported with them: a
# static archive carries no dependencies of its own.
include(CMakePackageConfigHelpers)

set(PINBROKER_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/pinbroker CACHE STRING
    "Where pinbrokerConfig.cmake is installed, relative to the prefix")
set(PINBROKER_INSTALL_PKGCONFIGDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig CACHE STRING
    "Where the pinbroker .pc files are installed, relative to the prefix")

# Exported target -> its name in the package (pinbroker::<name>).
set(_pb_exported
  pinbroker_common:common pinbroker_api_proto:api_proto pinbroker_api:api
  pinbroker_rdma_wire:rdma_wire pinbroker_client:client)
if(TARGET pinbroker_rdma_client)
  list(APPEND _pb_exported pinbroker_verbs:verbs pinbroker_rdma_client:rdma_client)
endif()
set(_pb_export_targets "")
foreach(_pair IN LISTS _pb_exported)
  string(REPLACE ":" ";" _pair "${_pair}")
  list(GET _pair 0 _target)
  list(GET _pair 1 _name)
  set_target_properties(${_target} PROPERTIES EXPORT_NAME ${_name})
  get_target_property(_type ${_target} TYPE)
  if(NOT _type STREQUAL "INTERFACE_LIBRARY")
    set_target_properties(${_target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  list(APPEND _pb_export_targets ${_target})
endforeach()

install(TARGETS ${_pb_export_targets} EXPORT pinbrokerTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Public headers. Nothing here includes a header that is not installed (ctest
# scripts.client_layering checks it).
set(_pb_public_headers include/pinbroker/channel_security.h include/pinbroker/client.h
    include/pinbroker/clock.h
    include/pinbroker/log_sink.h
    include/pinbroker/rdma_wire.h)
if(TARGET pinbroker_rdma_client)
  list(APPEND _pb_public_headers include/pinbroker/rdma_connection.h
       include/pinbroker/rdma_lease.h include/pinbroker/rdma_transfer_checks.h)
endif()
list(TRANSFORM _pb_public_headers PREPEND ${PROJECT_SOURCE_DIR}/)
install(FILES ${_pb_public_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/pinbroker)
# The generated API (messages and gRPC stubs), the request types' wire traits the stubs include,
# and the protos it comes from.
install(DIRECTORY ${PROJECT_BINARY_DIR}/api/pinbroker/v1/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/pinbroker/v1
        FILES_MATCHING PATTERN "*.pb.h")
install(FILES ${PROJECT_SOURCE_DIR}/api/pinbroker/v1/wire_traits.h
              ${PROJECT_SOURCE_DIR}/api/pinbroker/v1/pinbroker.proto
              ${PROJECT_SOURCE_DIR}/api/pinbroker/v1/config.proto
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/pinbroker/v1)

# Programs: the daemon in sbin, the command-line clients in bin.
install(TARGETS pinbrokerd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS pinctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET pinrdma)
  install(TARGETS pinrdma RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# The CMake package.
install(EXPORT pinbrokerTargets NAMESPACE pinbroker:: FILE pinbrokerTargets.cmake
        DESTINATION ${PINBROKER_INSTALL_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/pinbrokerConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/pinbrokerConfig.cmake
                              INSTALL_DESTINATION ${PINBROKER_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pinbrokerConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pinbrokerConfig.cmake
              ${PROJECT_BINARY_DIR}/pinbrokerConfigVersion.cmake
        DESTINATION ${PINBROKER_INSTALL_CMAKEDIR})

# The pkg-config modules. `prefix` is found from the .pc file's own location, so an installed
# tree can be moved (and `cmake --install --prefix` works).
if(IS_ABSOLUTE "${PINBROKER_INSTALL_PKGCONFIGDIR}")
  message(FATAL_ERROR "PINBROKER_INSTALL_PKGCONFIGDIR must be relative to the prefix")
endif()
file(RELATIVE_PATH PB_PC_PREFIX_FROM_PCDIR /prefix/${PINBROKER_INSTALL_PKGCONFIGDIR} /prefix)
string(REGEX REPLACE "/$" "" PB_PC_PREFIX_FROM_PCDIR "${PB_PC_PREFIX_FROM_PCDIR}")
# The abseil modules the libraries link (their CMake targets, as pkg-config names).
set(PB_PC_CLIENT_ABSL "absl_status absl_statusor absl_strings absl_time absl_synchronization \
absl_btree absl_flat_hash_set absl_any_invocable")
set(PB_PC_RDMA_ABSL "absl_flat_hash_map absl_span")
configure_file(${CMAKE_CURRENT_LIST_DIR}/pinbroker-client.pc.in
               ${PROJECT_BINARY_DIR}/pinbroker-client.pc @ONLY)
set(_pb_pc_files ${PROJECT_BINARY_DIR}/pinbroker-client.pc)
if(TARGET pinbroker_rdma_client)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/pinbroker-rdma-client.pc.in
                 ${PROJECT_BINARY_DIR}/pinbroker-rdma-client.pc @ONLY)
  list(APPEND _pb_pc_files ${PROJECT_BINARY_DIR}/pinbroker-rdma-client.pc)
endif()
install(FILES ${_pb_pc_files} DESTINATION ${PINBROKER_INSTALL_PKGCONFIGDIR})
