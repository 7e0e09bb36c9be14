/* plot.h - figures through gnuplot (pngcairo terminal), run as a child process on a script
 * file written by the caller; and the Pareto frontier of (cost, error) points. */
#ifndef SLM_PLOT_H
#define SLM_PLOT_H

#include <stdbool.h>

#include "../core/status.h"

/* Run `$GNUPLOT script` (default program "gnuplot"); its messages go to stderr.
 * SLM_ERR_UNSUPPORTED when the program cannot be started, SLM_ERR_IO when it fails. */
slm_status slm_plot_gnuplot(const char *script);

/* on[i] = point i is on the lower-left frontier: no other point has x <= x_i and y <= y_i
 * with one of them strictly lower (equal points are both on it). Points with a NaN
 * coordinate are never on it. Returns the count on the frontier. */
int slm_plot_pareto(const double *x, const double *y, int n, bool *on);

/* Copy s into out (cap bytes) for a gnuplot string in double quotes: '"' and '\' become '\''
 * and '/', control characters a blank. */
void slm_plot_quote(const char *s, char *out, int cap);

#endif
