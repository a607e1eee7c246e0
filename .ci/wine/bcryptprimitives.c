/*
 * A stand-in for Windows' bcryptprimitives.dll, for running our Windows test binaries under
 * Debian's Wine 8.0 in CI. It is never shipped and never built into kubelet-push.
 *
 * Rust's standard library (1.78 and later) takes its random bytes from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10+ has and Wine 8.0 does not: without this file every
 * Rust .exe exits with code 53 (DLL not found) before printing anything. ProcessPrng fills a
 * buffer with random bytes and always succeeds; advapi32's SystemFunction036 (RtlGenRandom),
 * which Wine implements, does the same job.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
