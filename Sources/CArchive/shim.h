// libarchive's reading interface (Debian: libarchive-dev), for WebDataset tar shards.
#include <archive.h>
#include <archive_entry.h>

static inline int CArchive_ok(void) { return ARCHIVE_OK; }
static inline int CArchive_eof(void) { return ARCHIVE_EOF; }
static inline int CArchive_warn(void) { return ARCHIVE_WARN; }
static inline int CArchive_retry(void) { return ARCHIVE_RETRY; }
static inline unsigned int CArchive_filetype_regular(void) { return AE_IFREG; }
