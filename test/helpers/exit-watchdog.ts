// Mocha root hook: if the process is still alive 30 s after the last test, something the suite started was not closed
// (a child process, a worker, a socket). Say what is open, then exit with mocha's status instead of hanging CI. The
// timer is unref'd, so it never keeps a process alive that would otherwise exit.
export const mochaHooks = {
  afterAll(): void {
    setTimeout(() => {
      console.error(
        `exit-watchdog: still running 30 s after the last test; open: ${JSON.stringify(process.getActiveResourcesInfo())}`,
      );
      process.exit(process.exitCode ?? 0);
    }, 30_000).unref();
  },
};
