// Open MPI's handles are macros over global objects (MPI_COMM_WORLD is `&ompi_mpi_comm_world`), which
// Swift cannot import. These prefixed inline functions expose them (the CNIOLinux_* pattern).
#include <mpi.h>

static inline MPI_Comm CMPI_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm CMPI_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype CMPI_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype CMPI_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype CMPI_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype CMPI_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype CMPI_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype CMPI_char(void) { return MPI_CHAR; }
static inline int CMPI_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline MPI_Request CMPI_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler CMPI_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *CMPI_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *CMPI_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline int CMPI_any_source(void) { return MPI_ANY_SOURCE; }
static inline int CMPI_any_tag(void) { return MPI_ANY_TAG; }
static inline int CMPI_success(void) { return MPI_SUCCESS; }
static inline int CMPI_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int CMPI_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int CMPI_status_source(const MPI_Status *s) { return s->MPI_SOURCE; }
static inline int CMPI_status_tag(const MPI_Status *s) { return s->MPI_TAG; }
static inline int CMPI_status_error(const MPI_Status *s) { return s->MPI_ERROR; }
static inline int CMPI_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int CMPI_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int CMPI_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int CMPI_err_truncate(void) { return MPI_ERR_TRUNCATE; }
