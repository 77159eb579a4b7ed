/// `--html` in headless chromium.
mod html;
/// The table in tmux at 80, 100 and 120 columns.
mod terminal;
