# from: sobomax/freebsd14_vendor:sys/sys/errno.h @ 0f7ff3427c99afe8b7a0ccf8638dc10aed02c3f8 (FreeBSD 14 vendor tree; file's $FreeBSD: e53a8d4c6c7f3af2eb3afcb24deccc8d0b37000f $)
# from: freebsd/freebsd-src:sys/sys/errno.h @ e97286a3e5f45bf063966b4807732f41bb6280da (older stored revision, $Id 1997; the lines below are identical there)
#define	EPERM		1		/* Operation not permitted */
#define	ENOENT		2		/* No such file or directory */
#define	EACCES		13		/* Permission denied */
#define	ENFILE		23		/* Too many open files in system */
#define	EMFILE		24		/* Too many open files */
#define	EPIPE		32		/* Broken pipe */
#define	EAGAIN		35		/* Resource temporarily unavailable */
#define	EWOULDBLOCK	EAGAIN		/* Operation would block */
#define	EADDRNOTAVAIL	49		/* Can't assign requested address */
#define	ENETDOWN	50		/* Network is down */
#define	ENETUNREACH	51		/* Network is unreachable */
#define	ECONNABORTED	53		/* Software caused connection abort */
#define	ECONNRESET	54		/* Connection reset by peer */
#define	ENOTCONN	57		/* Socket is not connected */
#define	ETIMEDOUT	60		/* Operation timed out */
#define	ECONNREFUSED	61		/* Connection refused */
#define	EHOSTDOWN	64		/* Host is down */
#define	EHOSTUNREACH	65		/* No route to host */
