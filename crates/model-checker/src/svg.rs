//! Counterexamples as an SVG timeline: one lane per CPU (and per other actor), one mark per step,
//! numbered as in the text trace; the violating step is drawn large and red.

use crate::explorer::Counterexample;

const LANE_HEIGHT: usize = 44;
const STEP_WIDTH: usize = 26;
const LEFT: usize = 190;
const TOP: usize = 50;
const LINE_HEIGHT: usize = 16;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The timeline of `counterexample`, titled `title`, as a standalone SVG document.
pub fn timeline(title: &str, counterexample: &Counterexample) -> String {
    let lanes = counterexample.lanes.len().max(1);
    let steps = counterexample.steps.len();
    let plot_width = LEFT + STEP_WIDTH * (steps + 1);
    // Monospace text: about 9 px per character at 15 px (the title) and 7.5 px at 12 px (the list).
    let title_width = 20 + title.chars().count() * 9;
    let lane_name = |lane: usize| {
        counterexample
            .lanes
            .get(lane)
            .map_or(1, |name| name.chars().count())
    };
    let longest_line = counterexample
        .steps
        .iter()
        .map(|step| step.text.chars().count() + lane_name(step.lane) + 8)
        .chain([counterexample.message.chars().count()])
        .max()
        .unwrap_or(0);
    let width = plot_width
        .max(900)
        .max(title_width)
        .max(20 + longest_line * 15 / 2);
    let plot_bottom = TOP + LANE_HEIGHT * lanes;
    let list_top = plot_bottom + 30;
    let height = list_top + LINE_HEIGHT * (steps + 3);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"monospace\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (lane, name) in counterexample.lanes.iter().enumerate() {
        let y = TOP + LANE_HEIGHT * lane + LANE_HEIGHT / 2;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text>\n<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" \
             stroke=\"#bbb\"/>\n",
            y + 4,
            escape(name),
            plot_width
        ));
    }
    for (index, step) in counterexample.steps.iter().enumerate() {
        let x = LEFT + STEP_WIDTH * (index + 1);
        let y = TOP + LANE_HEIGHT * step.lane + LANE_HEIGHT / 2;
        let (radius, colour) = if step.highlighted {
            (10, "#d00")
        } else {
            (5, "#246")
        };
        svg.push_str(&format!(
            "<g><title>{}. {}</title><circle cx=\"{x}\" cy=\"{y}\" r=\"{radius}\" fill=\"{colour}\"/>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text></g>\n",
            index + 1,
            escape(&step.text),
            y - 12,
            index + 1
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"10\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>\n",
        plot_bottom + 10,
        width - 10,
        plot_bottom + 10
    ));
    for (index, step) in counterexample.steps.iter().enumerate() {
        let lane = counterexample
            .lanes
            .get(step.lane)
            .map_or("?", String::as_str);
        let colour = if step.highlighted { "#d00" } else { "black" };
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\" fill=\"{colour}\">{:>3}. [{}] {}</text>\n",
            list_top + LINE_HEIGHT * index,
            index + 1,
            escape(lane),
            escape(&step.text)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"10\" y=\"{}\" fill=\"#d00\" font-weight=\"bold\">{}</text>\n</svg>\n",
        list_top + LINE_HEIGHT * (steps + 1),
        escape(&counterexample.message)
    ));
    svg
}
