//! rvsadm's manual page and shell completions, built from the grammar's own option tables so they
//! cannot drift from what rvsadm accepts: every option the parser knows has a line here (a test
//! holds the two together), and the letters and argument flags come from the parser's tables.

use crate::grammar::option_table;

/// One line of the manual per long option: its argument's name (if it takes one) and what it does.
const DOCS: &[(&str, &str, &str)] = &[
    ("add-service", "", "Add a virtual service (-t, -u or -f) with its scheduler and persistence."),
    ("edit-service", "", "Change a virtual service's scheduler, persistence, netmask or flags."),
    ("delete-service", "", "Delete a virtual service and its real servers."),
    ("clear", "", "Delete every virtual service."),
    ("list", "", "List the services and their real servers (with -c: the connections)."),
    ("zero", "", "Zero the packet, byte and rate counters of one service or of all."),
    ("add-server", "", "Add a real server (-r) to a virtual service."),
    ("edit-server", "", "Change a real server's forwarding method, weight or thresholds."),
    ("delete-server", "", "Delete a real server from a virtual service."),
    ("set", "", "Set the TCP, TCP FIN_WAIT and UDP timeouts: three numbers of seconds follow (0 keeps one)."),
    ("restore", "", "Apply the rules on standard input (the -S format), all or none of them."),
    ("save", "", "Print the rules in a form --restore reads back."),
    ("start-daemon", "state", "Start the connection synchronisation daemon: master or backup."),
    ("stop-daemon", "state", "Stop the connection synchronisation daemon: master or backup."),
    ("help", "", "Print the usage summary."),
    ("version", "", "Print rvsadm's version and the control protocol's."),
    ("tcp-service", "address:port", "The TCP virtual service at address:port (port 0: every port)."),
    ("udp-service", "address:port", "The UDP virtual service at address:port."),
    ("sctp-service", "address:port", "An SCTP virtual service: refused, rvs forwards TCP and UDP."),
    ("fwmark-service", "mark", "The virtual service of packets carrying this firewall mark."),
    ("scheduler", "name", "The scheduler: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh."),
    ("persistent", "[seconds]", "Send a client's connections to the same server for this long (300)."),
    ("netmask", "mask", "Group persistent clients by this netmask or IPv6 prefix length."),
    ("real-server", "address[:port]", "The real server (port mapping allowed in NAT mode)."),
    ("masquerading", "", "Forward by NAT: the director rewrites both directions."),
    ("ipip", "", "Forward by tunnelling (IPIP, or --tun-type)."),
    ("gatewaying", "", "Forward by direct routing: a MAC rewrite, replies bypass the director."),
    ("weight", "weight", "The server's weight; 0 quiesces it (no new connections)."),
    ("u-threshold", "n", "Take no new connections while the server has more than n."),
    ("l-threshold", "n", "Take new connections again once the server is down to n."),
    ("numeric", "", "Print addresses and ports as numbers."),
    ("connection", "", "List the connection entries."),
    ("timeout", "", "List the TCP, TCP FIN_WAIT and UDP timeouts."),
    ("stats", "", "List with packet and byte counters."),
    ("rate", "", "List with the rate estimates."),
    ("thresholds", "", "List with the connection thresholds."),
    ("persistent-conn", "", "List with the persistent connection counts."),
    ("nosort", "", "List in the table's order."),
    ("sort", "", "List sorted (the default)."),
    ("exact", "", "Print exact counter values, not abbreviated ones."),
    ("ipv6", "", "With -f: the service is for IPv6 packets."),
    ("ops", "", "One-packet scheduling (UDP): each datagram scheduled on its own."),
    (
        "sched-flags",
        "flags",
        "Scheduler flags, comma-separated (sh-fallback, sh-port, mh-fallback, mh-port).",
    ),
    ("tun-type", "type", "The tunnel type of an -i server: ipip (default), gue or gre."),
    ("tun-port", "port", "GUE: the UDP port the server decapsulates on (required for gue)."),
    ("tun-nocsum", "", "GUE or GRE: no tunnel checksum (the default)."),
    ("tun-csum", "", "GUE or GRE: with the UDP or GRE checksum."),
    ("tun-remcsum", "", "GUE: remote checksum offload (sent as plain GUE: rvs forwards finished packets)."),
    ("tun-info", "", "List with each server's tunnel type, port and checksum flag."),
    ("mcast-interface", "interface", "The interface the synchronisation daemon sends or listens on."),
    ("syncid", "id", "The synchronisation daemon's ID (0-255)."),
    ("daemon", "", "List the synchronisation daemons."),
    ("pe", "engine", "A persistence engine: refused, rvs has none."),
];

/// What rvsadm adds to ipvsadm's options (handled by rvsadm itself, never sent to rvsd).
const OWN: &[(&str, &str, &str)] = &[
    ("socket", "path", "rvsd's control socket (default /run/rvs/rvsd.sock, or $RVS_SOCKET)."),
    ("completions", "shell", "Print the completion script for bash, zsh or fish."),
    ("manual", "", "Print this manual page (roff)."),
];

struct Entry {
    long: &'static str,
    short: Option<char>,
    takes_arg: bool,
    arg: &'static str,
    help: &'static str,
}

impl Entry {
    /// How the option is typed: `-c` (if it has a letter) and `--long`.
    fn spellings(&self) -> impl Iterator<Item = String> + '_ {
        self.short.map(|c| format!("-{c}")).into_iter().chain([format!("--{}", self.long)])
    }
}

fn entries() -> Vec<Entry> {
    let docs = |long: &str| DOCS.iter().find(|d| d.0 == long).map_or(("", ""), |d| (d.1, d.2));
    let mut v: Vec<Entry> = option_table()
        .into_iter()
        .map(|(long, short, takes_arg)| {
            let (arg, help) = docs(long);
            Entry { long, short, takes_arg, arg, help }
        })
        .collect();
    v.extend(OWN.iter().map(|&(long, arg, help)| Entry {
        long,
        short: None,
        takes_arg: !arg.is_empty(),
        arg,
        help,
    }));
    v
}

/// Escapes text for roff: backslashes, hyphens (as roff's minus, so options copy and paste), and
/// leading dots or quotes. rvsd's page uses it too.
pub fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

/// rvsadm(8), in roff.
pub fn man_page(version: &str) -> String {
    let mut m = String::new();
    m.push_str(&format!(".TH RVSADM 8 \"\" \"rvs {}\" \"System Administration\"\n", roff(version)));
    m.push_str(".SH NAME\nrvsadm \\- administer the rvs director with ipvsadm's command language\n");
    m.push_str(".SH SYNOPSIS\n.B rvsadm\n[\\fB\\-\\-socket\\fR \\fIpath\\fR] \\fIipvsadm-command-line\\fR\n");
    m.push_str(".SH DESCRIPTION\n");
    m.push_str(
        "rvsadm takes the command lines of ipvsadm 1.31 and prints what ipvsadm prints, byte for \
         byte. It is a thin client: it sends its arguments (and, for \\fB\\-R\\fR, the rules on \
         standard input) to rvsd over its control socket, where they are parsed, checked and \
         applied at once, all or nothing.\n.PP\nExit status: 0 on success, 2 for a command\\-line \
         error, 255 for an error the director returns.\n",
    );
    m.push_str(".SH OPTIONS\n");
    for e in entries() {
        m.push_str(".TP\n");
        let mut head = String::new();
        if let Some(c) = e.short {
            head.push_str(&format!("\\fB\\-{c}\\fR, "));
        }
        head.push_str(&format!("\\fB\\-\\-{}\\fR", roff(e.long)));
        if e.takes_arg && !e.arg.is_empty() {
            head.push_str(&format!(" \\fI{}\\fR", roff(e.arg)));
        }
        m.push_str(&head);
        m.push('\n');
        m.push_str(&roff(e.help));
        m.push('\n');
    }
    m.push_str(".SH FILES\n.TP\n/run/rvs/rvsd.sock\nrvsd's control socket.\n.TP\n/etc/rvs/rules\n");
    m.push_str("The rules rvsd restores at start (\\fB\\-S\\fR format).\n");
    m.push_str(".SH EXAMPLES\n.nf\nrvsadm \\-A \\-t 192.0.2.80:80 \\-s wrr\n");
    m.push_str("rvsadm \\-a \\-t 192.0.2.80:80 \\-r 203.0.113.10:8080 \\-m \\-w 3\nrvsadm \\-Ln\n");
    m.push_str("rvsadm \\-Sn > /etc/rvs/rules\n.fi\n");
    m.push_str(".SH SEE ALSO\n.BR rvsd (8),\n.BR ipvsadm (8),\n.BR keepalived.conf (5)\n");
    m
}

/// Why a completion script could not be made.
#[derive(Debug, thiserror::Error)]
#[error("no completions for shell {0:?}: bash, zsh or fish")]
pub struct UnknownShell(pub String);

/// The completion script for `shell`.
pub fn completions(shell: &str) -> Result<String, UnknownShell> {
    let entries = entries();
    let schedulers: Vec<&str> = rvs_ipvs::SchedulerKind::ALL.iter().map(|k| k.name()).collect();
    let words: Vec<String> = entries.iter().flat_map(Entry::spellings).collect();
    match shell {
        "bash" => Ok(format!(
            r#"# bash completion for rvsadm (generated by rvsadm --completions bash)
_rvsadm() {{
    local cur prev
    COMPREPLY=()
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "$prev" in
        -s|--scheduler) COMPREPLY=($(compgen -W "{sched}" -- "$cur")); return ;;
        --start-daemon|--stop-daemon) COMPREPLY=($(compgen -W "master backup" -- "$cur")); return ;;
        --tun-type) COMPREPLY=($(compgen -W "ipip gue gre" -- "$cur")); return ;;
        --completions) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")); return ;;
        --mcast-interface) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")); return ;;
        --socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        {args}) return ;;
    esac
    COMPREPLY=($(compgen -W "{words}" -- "$cur"))
}}
complete -F _rvsadm rvsadm
"#,
            sched = schedulers.join(" "),
            args = entries
                .iter()
                .filter(|e| e.takes_arg
                    && !matches!(
                        e.long,
                        "scheduler"
                            | "start-daemon"
                            | "stop-daemon"
                            | "tun-type"
                            | "completions"
                            | "mcast-interface"
                            | "socket"
                            | "persistent"
                    ))
                .flat_map(Entry::spellings)
                .collect::<Vec<_>>()
                .join("|"),
            words = words.join(" "),
        )),
        "zsh" => {
            let mut s = String::from(
                "#compdef rvsadm\n# zsh completion for rvsadm (generated by rvsadm --completions zsh)\n_arguments \\\n",
            );
            for e in &entries {
                let help = e.help.replace('\'', "").replace(['[', ']', ':'], " ");
                let action = match e.long {
                    "scheduler" => format!(":scheduler:({})", schedulers.join(" ")),
                    "start-daemon" | "stop-daemon" => ":state:(master backup)".to_owned(),
                    "tun-type" => ":type:(ipip gue gre)".to_owned(),
                    "completions" => ":shell:(bash zsh fish)".to_owned(),
                    "socket" => ":path:_files".to_owned(),
                    "persistent" => "::seconds: ".to_owned(),
                    _ if e.takes_arg => format!(":{}: ", e.arg.replace(':', " ")),
                    _ => String::new(),
                };
                if let Some(c) = e.short {
                    s.push_str(&format!("  '-{c}[{help}]{action}' \\\n"));
                }
                s.push_str(&format!("  '--{}[{help}]{action}' \\\n", e.long));
            }
            s.push_str("  '*: :'\n");
            Ok(s)
        }
        "fish" => {
            let mut s =
                String::from("# fish completion for rvsadm (generated by rvsadm --completions fish)\n");
            for e in &entries {
                s.push_str("complete -c rvsadm");
                if let Some(c) = e.short {
                    s.push_str(&format!(" -s {c}"));
                }
                s.push_str(&format!(" -l {}", e.long));
                match e.long {
                    "scheduler" => s.push_str(&format!(" -x -a '{}'", schedulers.join(" "))),
                    "start-daemon" | "stop-daemon" => s.push_str(" -x -a 'master backup'"),
                    "tun-type" => s.push_str(" -x -a 'ipip gue gre'"),
                    "completions" => s.push_str(" -x -a 'bash zsh fish'"),
                    "socket" => s.push_str(" -r -F"),
                    _ if e.takes_arg => s.push_str(" -x"),
                    _ => {}
                }
                s.push_str(&format!(" -d '{}'\n", e.help.replace('\'', "")));
            }
            Ok(s)
        }
        other => Err(UnknownShell(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_the_parser_knows_is_documented_and_nothing_else() {
        let table = option_table();
        for (long, _, _) in &table {
            assert!(DOCS.iter().any(|d| d.0 == *long), "--{long} has no line in the manual");
        }
        for d in DOCS {
            assert!(
                table.iter().any(|t| t.0 == d.0),
                "the manual documents --{} the parser does not know",
                d.0
            );
            let takes = table.iter().find(|t| t.0 == d.0).is_some_and(|t| t.2);
            assert_eq!(takes, !d.1.is_empty(), "--{}: argument name vs the parser's table", d.0);
        }
    }

    #[test]
    fn the_manual_names_options_with_their_letters() {
        let m = man_page("0.1.0");
        assert!(m.starts_with(".TH RVSADM 8"), "{m}");
        assert!(m.contains("\\fB\\-A\\fR, \\fB\\-\\-add\\-service\\fR"), "{m}");
        assert!(m.contains("\\fB\\-s\\fR, \\fB\\-\\-scheduler\\fR \\fIname\\fR"), "{m}");
    }

    #[test]
    fn completions_for_the_three_shells_and_a_clear_error_for_others() {
        for sh in ["bash", "zsh", "fish"] {
            let s = completions(sh).expect(sh);
            assert!(s.contains("wlc") && s.contains("scheduler"), "{sh}: {s}");
        }
        assert!(completions("tcsh").is_err());
    }
}
