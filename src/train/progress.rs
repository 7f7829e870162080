//! Progress bars for pretraining: one for epochs and one for the steps of the current epoch,
//! showing loss, learning rate, pairs/s (images, each of two views) and the time left. Hidden with `--quiet` or when
//! stderr is not a terminal (indicatif's default).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The two bars.
pub struct TrainProgress {
    verbose: bool,
    multi: MultiProgress,
    epochs: ProgressBar,
    steps: ProgressBar,
}

impl TrainProgress {
    pub fn new(total_epochs: u64, steps_per_epoch: u64, verbose: bool) -> Self {
        let multi = MultiProgress::new();
        if !verbose {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let epochs = multi.add(ProgressBar::new(total_epochs));
        epochs.set_style(
            ProgressStyle::with_template("epoch {pos}/{len} [{bar:30}] elapsed {elapsed_precise} eta {eta_precise}")
                .expect("template")
                .progress_chars("=> "),
        );
        let steps = multi.add(ProgressBar::new(steps_per_epoch));
        steps.set_style(
            ProgressStyle::with_template("step  {pos}/{len} [{bar:30}] {msg}").expect("template").progress_chars("=> "),
        );
        Self { verbose, multi, epochs, steps }
    }

    pub fn start_epoch(&self, epoch: u64, first_step: u64) {
        self.epochs.set_position(epoch);
        self.steps.set_position(first_step);
    }

    pub fn step(&self, loss: f32, lr: f64, pairs_per_sec: f64) {
        self.steps.inc(1);
        self.steps.set_message(format!("loss {loss:.4}  lr {lr:.4}  {pairs_per_sec:.0} pairs/s"));
    }

    pub fn end_epoch(&self) {
        self.epochs.inc(1);
    }

    /// Prints a line above the bars (or plainly, when the bars are hidden because stderr is not
    /// a terminal, so logs still get the epoch summaries); nothing with `--quiet`.
    pub fn println(&self, line: &str) {
        if !self.verbose {
            return;
        }
        if self.multi.is_hidden() || self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    /// Prints a warning above the bars; shown even when the bars are hidden.
    pub fn warn(&self, line: &str) {
        self.multi.suspend(|| eprintln!("warning: {line}"));
    }

    pub fn finish(&self) {
        self.steps.finish_and_clear();
        self.epochs.finish_and_clear();
    }
}
