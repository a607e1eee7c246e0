/*
 * A test helper, never shipped: stops a Windows process the way containerd's Windows shim
 * (hcsshim) stops a HostProcess container's process, so the end-to-end tests can do it
 * under Wine.
 *
 *   ctrl-event.exe IMAGE EVENT
 *
 * IMAGE is the process's executable name (e.g. kp-1234.exe; exactly one such process must
 * run). EVENT is one of c, break, close, logoff, shutdown: a thread is started in the
 * target at kernel32's CtrlRoutine with that console control event, which runs the
 * target's SetConsoleCtrlHandler handlers as a console would; this is what hcsshim does
 * for a stop signal (internal/jobcontainers/process.go, signalProcess), since
 * GenerateConsoleCtrlEvent can only send Ctrl-C and Ctrl-Break. EVENT kill terminates the
 * process with exit code 1, as hcsshim does for SIGKILL (Go's os.Process.Kill).
 *
 * Exit codes: 0 delivered, 2 no such process (or more than one), 3 a Windows call failed,
 * 64 bad arguments.
 */
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <string.h>

static int find(const char *image, DWORD *pid)
{
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    PROCESSENTRY32 entry;
    int found = 0;
    if (snap == INVALID_HANDLE_VALUE)
        return 0;
    entry.dwSize = sizeof(entry);
    for (BOOL ok = Process32First(snap, &entry); ok; ok = Process32Next(snap, &entry)) {
        if (_stricmp(entry.szExeFile, image) == 0) {
            *pid = entry.th32ProcessID;
            found++;
        }
    }
    CloseHandle(snap);
    return found;
}

int main(int argc, char **argv)
{
    static const struct { const char *name; DWORD event; } events[] = {
        {"c", CTRL_C_EVENT},         {"break", CTRL_BREAK_EVENT},
        {"close", CTRL_CLOSE_EVENT}, {"logoff", CTRL_LOGOFF_EVENT},
        {"shutdown", CTRL_SHUTDOWN_EVENT},
    };
    DWORD pid = 0, event = 0;
    int kill = 0, known = 0, found;
    HANDLE process, thread;
    FARPROC routine;

    if (argc != 3) {
        fprintf(stderr, "usage: ctrl-event IMAGE c|break|close|logoff|shutdown|kill\n");
        return 64;
    }
    kill = strcmp(argv[2], "kill") == 0;
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (strcmp(argv[2], events[i].name) == 0) {
            event = events[i].event;
            known = 1;
        }
    }
    if (!kill && !known) {
        fprintf(stderr, "ctrl-event: unknown event %s\n", argv[2]);
        return 64;
    }
    found = find(argv[1], &pid);
    if (found != 1) {
        fprintf(stderr, "ctrl-event: %d processes named %s\n", found, argv[1]);
        return 2;
    }
    process = OpenProcess(PROCESS_ALL_ACCESS, FALSE, pid);
    if (process == NULL) {
        fprintf(stderr, "ctrl-event: OpenProcess(%lu): error %lu\n", pid, GetLastError());
        return 3;
    }
    if (kill) {
        if (!TerminateProcess(process, 1)) {
            fprintf(stderr, "ctrl-event: TerminateProcess(%lu): error %lu\n", pid, GetLastError());
            return 3;
        }
        printf("terminated %lu\n", pid);
        return 0;
    }
    /* kernel32 is mapped at the same address in every process, so the address of
     * CtrlRoutine found here is valid in the target too (hcsshim relies on the same). */
    routine = GetProcAddress(GetModuleHandleA("kernel32.dll"), "CtrlRoutine");
    if (routine == NULL) {
        fprintf(stderr, "ctrl-event: no kernel32!CtrlRoutine: error %lu\n", GetLastError());
        return 3;
    }
    thread = CreateRemoteThread(process, NULL, 0, (LPTHREAD_START_ROUTINE)(void *)routine,
                                (void *)(ULONG_PTR)event, 0, NULL);
    if (thread == NULL) {
        fprintf(stderr, "ctrl-event: CreateRemoteThread(%lu): error %lu\n", pid, GetLastError());
        return 3;
    }
    CloseHandle(thread);
    CloseHandle(process);
    printf("sent %s to %lu\n", argv[2], pid);
    return 0;
}
