# from: torvalds/linux:include/uapi/asm-generic/errno-base.h @ ef8c029fa793423439e67ef0416b220d3fa3321a
# from: torvalds/linux:include/uapi/asm-generic/errno.h @ 01b944fe1cd4e21a2a9ed51adbdbafe2d5e905ba
#define	EPERM		 1	/* Operation not permitted */
#define	ENOENT		 2	/* No such file or directory */
#define	EAGAIN		11	/* Try again */
#define	EACCES		13	/* Permission denied */
#define	ENFILE		23	/* File table overflow */
#define	EMFILE		24	/* Too many open files */
#define	EPIPE		32	/* Broken pipe */
#define	EWOULDBLOCK	EAGAIN	/* Operation would block */
#define	EADDRNOTAVAIL	99	/* Cannot assign requested address */
#define	ENETDOWN	100	/* Network is down */
#define	ENETUNREACH	101	/* Network is unreachable */
#define	ECONNABORTED	103	/* Software caused connection abort */
#define	ECONNRESET	104	/* Connection reset by peer */
#define	ENOTCONN	107	/* Transport endpoint is not connected */
#define	ETIMEDOUT	110	/* Connection timed out */
#define	ECONNREFUSED	111	/* Connection refused */
#define	EHOSTDOWN	112	/* Host is down */
#define	EHOSTUNREACH	113	/* No route to host */
