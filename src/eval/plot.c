/* plot.c - gnuplot as a child process; Pareto frontier. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

slm_status slm_plot_gnuplot(const char *script) {
    const char *prog = getenv("GNUPLOT");
    if (!prog || !*prog) prog = "gnuplot";
    char *argv[] = {(char *)prog, (char *)script, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, prog, NULL, NULL, argv, environ);
    if (e)
        return slm_error(SLM_ERR_UNSUPPORTED, "cannot run %s: %s (install gnuplot: apt-get install gnuplot-nox)", prog,
                         strerror(e));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return slm_error(SLM_ERR_IO, "waiting for %s: %s", prog, strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return slm_error(SLM_ERR_UNSUPPORTED, "%s not found (install gnuplot: apt-get install gnuplot-nox)", prog);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return slm_error(SLM_ERR_IO, "%s %s failed", prog, script);
    return SLM_OK;
}

int slm_plot_pareto(const double *x, const double *y, int n, bool *on) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        on[i] = !isnan(x[i]) && !isnan(y[i]);
        for (int j = 0; j < n && on[i]; j++) {
            if (j == i || isnan(x[j]) || isnan(y[j])) continue;
            if (x[j] <= x[i] && y[j] <= y[i] && (x[j] < x[i] || y[j] < y[i])) on[i] = false;
        }
        count += on[i];
    }
    return count;
}

void slm_plot_quote(const char *s, char *out, int cap) {
    int n = 0;
    for (; *s && n + 1 < cap; s++) {
        char c = *s;
        if (c == '"') c = '\'';
        else if (c == '\\') c = '/';
        else if ((unsigned char)c < 0x20) c = ' ';
        out[n++] = c;
    }
    if (cap > 0) out[n] = 0;
}
