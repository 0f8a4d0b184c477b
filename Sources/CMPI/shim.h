// OpenMPI's handles and constants are macros that Swift cannot import; these accessors expose them.
#ifndef MOE_CMPI_SHIM_H
#define MOE_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm moe_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm moe_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype moe_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype moe_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype moe_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype moe_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype moe_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype moe_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Op moe_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op moe_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op moe_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op moe_mpi_lor(void) { return MPI_LOR; }
static inline void *moe_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *moe_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *moe_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request moe_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler moe_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int moe_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int moe_mpi_any_tag(void) { return MPI_ANY_TAG; }
static inline int moe_mpi_undefined(void) { return MPI_UNDEFINED; }
static inline int moe_mpi_status_source(const MPI_Status *s) { return s->MPI_SOURCE; }
static inline int moe_mpi_status_tag(const MPI_Status *s) { return s->MPI_TAG; }
#endif
