# from: apple-oss-distributions/xnu:bsd/sys/errno.h @ e3723e1f17661b24996789d8afc084c0c3303b26 (xnu-11417.101.15)
#define EPERM           1               /* Operation not permitted */
#define ENOENT          2               /* No such file or directory */
#define EACCES          13              /* Permission denied */
#define ENFILE          23              /* Too many open files in system */
#define EMFILE          24              /* Too many open files */
#define EPIPE           32              /* Broken pipe */
#define EAGAIN          35              /* Resource temporarily unavailable */
#define EWOULDBLOCK     EAGAIN          /* Operation would block */
#define EADDRNOTAVAIL   49              /* Can't assign requested address */
#define ENETDOWN        50              /* Network is down */
#define ENETUNREACH     51              /* Network is unreachable */
#define ECONNABORTED    53              /* Software caused connection abort */
#define ECONNRESET      54              /* Connection reset by peer */
#define ENOTCONN        57              /* Socket is not connected */
#define ETIMEDOUT       60              /* Operation timed out */
#define ECONNREFUSED    61              /* Connection refused */
#define EHOSTDOWN       64              /* Host is down */
#define EHOSTUNREACH    65              /* No route to host */
