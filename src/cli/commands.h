/* commands.h - one entry point per subcommand (one file each). */
#ifndef SLM_CLI_COMMANDS_H
#define SLM_CLI_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_awq(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_share(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
