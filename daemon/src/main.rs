//! `tsunagi`: the CLI arrives with the check workflow; this first step ships the card path.

fn main() {
    eprintln!("tsunagi: まだコマンドはありません（カード読取部のみ）。");
    std::process::exit(2);
}
